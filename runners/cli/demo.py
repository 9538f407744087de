"""`python -m runners.cli.demo model=<name> input=<image file or sentence>
[model.weights=<path>] [model.size=tiny]` (`make demo`): a short real inference with the
zoo alone (zoo/demo.py)."""

from __future__ import annotations

import sys
from typing import Optional

from runners.config import DemoConfig
from runners.errors import USER_ERRORS, one_line
from runners.parent import compose


def main(argv: Optional[list[str]] = None) -> int:
    from zoo import demo

    try:
        argv = compose.quote_values(sys.argv[1:] if argv is None else argv, ("input", "model.weights"))
        config: DemoConfig = compose.command_config(argv, "demo")
        model = config.model
        demo.check(model.name, config.input, model.weights)
    except (*USER_ERRORS, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    # a demo is the real model (its pretrained weights have the real shapes): auto is the real size
    return demo.demo(model.name, config.input, model.weights, None if model.size == "auto" else model.size)


if __name__ == "__main__":
    sys.exit(main())
