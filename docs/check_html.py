"""Check that the built HTML pages render their content (run after sphinx-build).

Opens the index, every tutorial and the API pages of the built site and checks
for the expected content: headings, executed outputs, figures whose image files
exist and are non-empty PNGs, and API entries with their examples.

Usage::

    python docs/check_html.py [docs/_build/html]
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if a.get("id"):
            self.ids.add(a["id"])
        if a.get("class"):
            self.classes.extend(a["class"].split())

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    p.body = " ".join(" ".join(p.text).split())  # type: ignore[attr-defined]
    return p


def check(site: Path) -> list[str]:
    problems: list[str] = []

    def need(cond: bool, msg: str) -> None:
        if not cond:
            problems.append(msg)

    index = site / "index.html"
    need(index.exists(), "index.html missing")
    if index.exists():
        p = parse(index)
        need("snntorch-egru" in p.body and "Event-based GRU" in p.body, "index: title/intro text missing")
        for link in (
            "installation.html",
            "quickstart.html",
            "guide/model.html",
            "api/index.html",
            "benchmarks.html",
            "changelog.html",
            "tutorials_index.html",
        ):
            need(link in (site / "index.html").read_text(), f"index: no link to {link}")

    tutorials = sorted((site / "tutorials").glob("*.html"))
    need(len(tutorials) >= 1, "no tutorial pages built")
    for t in tutorials:
        p = parse(t)
        need("cell_output" in p.classes or "output" in p.classes, f"{t.name}: no executed cell output")
        pngs = [i for i in p.images if i.endswith(".png")]
        need(len(pngs) >= 1, f"{t.name}: no figure")
        for src in pngs:
            f = (t.parent / src).resolve()
            need(
                f.exists() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 2000,
                f"{t.name}: figure {src} missing or empty",
            )
        need("Traceback (most recent call last)" not in p.body, f"{t.name}: traceback in output")

    model = site / "guide" / "model.html"
    if model.exists():
        p = parse(model)
        need(any(i.endswith(".png") for i in p.images), "guide/model: the build-time figure is missing")
        need("math" in p.classes, "guide/model: no math blocks")

    api = site / "api" / "generated" / "snntorch_egru.html"
    need(api.exists(), "API page of snntorch_egru missing")
    if api.exists():
        p = parse(api)
        for name in ("snntorch_egru.EGRU", "snntorch_egru.EGRUCell", "snntorch_egru.EGRU.from_gru"):
            need(name in p.ids, f"API page: no entry for {name}")
        need("Example" in p.body and "init_hidden" in p.body, "API page: docstring text or example missing")
    return problems


def main() -> int:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html")
    problems = check(site)
    pages = len(list(site.rglob("*.html")))
    if problems:
        print(f"{len(problems)} problem(s) in {site} ({pages} pages):")
        for p in problems:
            print("  " + p)
        return 1
    tut = sorted(p.stem for p in (site / "tutorials").glob("*.html"))
    print(f"OK: {pages} pages; tutorials rendered with figures: {', '.join(tut)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
