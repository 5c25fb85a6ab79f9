"""The thesis's image-classification experiments as a library: data, models, schedules, training, plots.

Stage scripts in stages/ call into it; nothing here reads params.yaml except thesislab.config.
"""
