"""Stage plot: the thesis's figures (schedules overlaid) and a comparison table, from the training logs."""

import argparse

from thesislab import config, io, plots
from thesislab.errors import stage_main


@stage_main
def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metrics", required=True,
                    help="folder holding <schedule>/{epochs.csv,metrics.json,predictions.csv}")
    ap.add_argument("--out", required=True, help="folder for the PNGs and comparison.md")
    args = ap.parse_args()
    cfg = config.load()
    runs = plots.load_runs(args.metrics, cfg.schedules)
    title = f"{cfg.model} on {cfg.dataset}: " + " vs ".join(cfg.schedules) + f" (lr {cfg.lr:g}, batch {cfg.batch_size})"
    plots.draw_all(runs, args.out, title)
    table = plots.comparison_table(runs, cfg.dataset)
    io.write_text(f"{args.out}/comparison.md", f"# {title}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
