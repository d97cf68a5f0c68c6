"""``pagingcheck docs``: the manual (the repository's ``docs/`` folder), installed with the
package, so a message citing a topic can be followed without the repository.

The folder sits beside ``checks`` both in a clone and in an installed package
(``pagingcheck/docs``), so it is found from this file's place.
"""

from __future__ import annotations

from pathlib import Path

from pagingcheck.model.errors import UserError

FOLDER = Path(__file__).resolve().parent.parent / "docs"


def topics() -> dict[str, str]:
    """Every topic, by name, with its title (the page's first heading)."""
    found = {}
    for page in sorted(FOLDER.glob("*.md")):
        first = page.read_text(encoding="utf-8").splitlines()[:1]
        found[page.stem] = first[0].lstrip("# ").strip() if first else page.stem
    return found


def page(topic: str) -> str:
    """The text of ``topic`` (UserError naming the topics there are for any other)."""
    known = topics()
    if not known:
        raise UserError(f"the manual is not installed with this copy of pagingcheck ({FOLDER})")
    name = topic.removeprefix("docs/").removesuffix(".md")
    if name not in known:
        raise UserError(f"no topic {topic!r} in the manual; the topics are: {', '.join(known)}")
    return (FOLDER / f"{name}.md").read_text(encoding="utf-8")
