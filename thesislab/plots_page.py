"""The page template `dvc plots show` and `dvc plots diff` write their charts into, with Vega, Vega-Lite and
Vega-Embed inline: DVC's own page loads them from a CDN, so without a network its interactive charts are blank.

`python -m thesislab.plots_page` (make setup runs it) writes the template where .dvc/config's
`plots.html_template` points (.dvc/tmp/plots_page.html, ignored by git); vl-convert-python bundles the three
libraries offline, from the copies inside its wheel.
"""

import sys
from pathlib import Path

from thesislab import io

TEMPLATE = Path(".dvc") / "tmp" / "plots_page.html"  # .dvc/config: [plots] html_template = tmp/plots_page.html

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script type="text/javascript">
LIBRARIES
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page() -> str:
    """The template: DVC fills {plot_divs} (and {refresh_tag}); it has no {scripts}, so DVC adds no CDN tags."""
    import vl_convert

    # The default snippet sets window.vegaEmbed, which the scripts DVC writes beside each chart call.
    return PAGE.replace("LIBRARIES", vl_convert.javascript_bundle().replace("</script", "<\\/script"))


def write(path=TEMPLATE) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_text(path, page())
    return path


if __name__ == "__main__":
    print(f"plots page: {write(sys.argv[1] if len(sys.argv) > 1 else TEMPLATE)} (Vega inline: dvc plots work offline)")
