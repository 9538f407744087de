"""`python -m zoo list [--json]` and `python -m zoo cards` (the Markdown of docs/zoo.md)."""

from __future__ import annotations

import argparse
import json
import sys

import zoo


def cards_markdown() -> str:
    """docs/zoo.md, generated from the registry (`make docs`)."""
    lines = [
        "# The model zoo",
        "",
        "Generated from the registry by `make docs`; do not edit by hand. Figures are for one sample at the",
        "real size and input shape (224x224 images, 128 tokens), forward pass, in FLOPs (2 per multiply-add);",
        "tests recompute them from the models and check them against the upstream figures named here.",
        "",
        "| model | framework | task | params | GFLOPs/sample | workloads | runtimes |",
        "|---|---|---|---|---|---|---|",
    ]
    entries = [zoo.get(n) for n in zoo.list()]
    for e in entries:
        lines.append(
            f"| [{e.name}](#{e.name}) | {e.framework} | {e.task} | {e.params:,} | "
            f"{e.flops_per_sample / 1e9:,.3f} | {', '.join(e.workloads)} | {', '.join(e.runtimes())} |"
        )
    for e in entries:
        sizes = ", ".join(f"`{s}`" + (" (real)" if s == e.default_size else "") for s in e.sizes)
        shape = {
            "text": "workload.seq_len (tokens)",
            "image": "workload.image_size (pixels per side)",
            "tabular": "13 dense + categorical features per sample",
        }.get(e.inputs, e.inputs)
        lines += [
            "",
            f"## {e.name}",
            "",
            e.summary,
            "",
            f"- framework: {e.framework}; task: {e.task}; workloads: {', '.join(e.workloads)}",
            f"- runtimes: {', '.join(e.runtimes())}"
            + (f" (`runtime={e.exported_to[0]}`: inference, docs/runtimes.md)" if e.exported_to else ""),
            f"- sizes: {sizes}",
            f"- input: {shape}"
            + (f", at most {e.max_seq_len:,} tokens" if e.max_seq_len else "")
            + (f", at least {e.min_image_size} pixels" if e.min_image_size else ""),
            f"- parameters: {e.params:,}; forward FLOPs per sample: {e.flops_per_sample:,.0f}",
            f"- checked against: {e.source}",
            f"- run it: `make bench model={e.name} workload=train` (the real size on a GPU, `tiny` on a machine"
            f' without one: model.size=auto; `ARGS="model.size={e.default_size}"` asks for the real size anywhere)',
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the models, their size and cost")
    listing.add_argument("--json", action="store_true", help="a JSON list, one object per model")
    sub.add_parser("cards", help="print docs/zoo.md")
    args = parser.parse_args(argv)
    if args.command == "cards":
        sys.stdout.write(cards_markdown())
        return 0
    cards = [zoo.card(zoo.get(name)) for name in zoo.list()]
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vgpu-bench zoo")
    for column in ("name", "framework", "task", "params", "GFLOPs/sample", "workloads", "runtimes"):
        table.add_column(column, justify="right" if column in ("params", "GFLOPs/sample") else "left")
    for c in cards:
        table.add_row(
            c["name"],
            c["framework"],
            c["task"],
            f"{c['params']:,}",
            f"{c['flops_per_sample'] / 1e9:,.3f}",
            ", ".join(c["workloads"]),
            ", ".join(c["runtimes"]),
        )
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
