"""Set params in params.yaml from KEY=VALUE arguments (YAML values; dotted keys for nested ones), for the bench
scripts that run the stages in a copy of the project:

    python -m bench.set_params model=vgg16 batch_size=8 'seeds=[0]' speedsigns.train_per_class=40
"""

import sys

import yaml


def main(pairs):
    with open("params.yaml") as f:
        params = yaml.safe_load(f)
    for pair in pairs:
        key, value = pair.split("=", 1)
        *parents, last = key.split(".")
        node = params
        for k in parents:
            node = node[k]
        node[last] = yaml.safe_load(value)
    with open("params.yaml", "w") as f:
        yaml.safe_dump(params, f, sort_keys=False)


if __name__ == "__main__":
    main(sys.argv[1:])
