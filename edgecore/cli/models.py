"""`edgecore models`: the models known by name, and which are present."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("models", help="list the models known by name and which are downloaded",
                       description="List the built-in demo models and the registry's models (name, size, licence, "
                                   "whether present in the model cache). `edgecore pull NAME` downloads one; "
                                   "`--model NAME` runs it.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.cli.table import render
    from edgecore.memory import format_size
    from edgecore.models import DEMO_MODELS
    from edgecore.models.registry import models_dir, registry

    rows = [{"name": name, "title": f"built-in demo ({folder})", "size": None, "license": "MIT", "present": True,
             "path": None} for name, folder in DEMO_MODELS.items()]
    for entry in registry().values():
        rows.append({"name": entry.name, "title": entry.title, "size": entry.size, "license": entry.license,
                     "present": entry.present, "path": str(entry.path)})
    if args.json:
        print(json.dumps({"models_dir": str(models_dir()), "models": rows}, indent=2))
        return 0
    table = [{"name": r["name"], "size": format_size(r["size"]) if r["size"] else "-", "license": r["license"],
              "status": "built in" if r["path"] is None else "present" if r["present"] else
              f"absent: edgecore pull {r['name']}", "title": r["title"]} for r in rows]
    print(render(table, [("name", "name"), ("size", "size"), ("status", "status"), ("license", "licence"),
                         ("title", "model")]))
    print(f"\nmodel cache: {models_dir()}")
    return 0
