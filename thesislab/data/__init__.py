"""Datasets: generating, downloading and importing images; path lists read through thesislab.files; stats."""
