"""mkdocs hooks (mkdocs.yml `hooks:`): the site's home page is the repository's README.md.

- The README lives outside docs/ and links into it as `docs/<page>`; its copy as `index.md`
  links to `<page>`.
- A link to a file of the repository outside docs/ (a script, a test) becomes the file's path
  as inline code: the site has no copy of it.
- A link to a folder of docs/ goes to its README.md, index.md or report.md; a folder without
  one (JSON, logs) is named as inline code: a static site cannot list a folder.
- The README's images under docs/ are shown from there; its images elsewhere are not (strict
  mode fails: keep the README's figures in docs/).
- The run outputs under docs/results/<run>/ are kept as the scripts wrote them, some of their
  figures not kept in the repository: such a missing figure is named in the page's text.
Any other link to something that does not exist is left alone, so that strict mode fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")  # [text](target) and ![alt](image)
RESULTS = DOCS / "results"


def on_files(files, config):
    """Add the README as the home page (index.md), unless docs/ has its own."""
    if files.get_file_from_path("index.md") is None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        files.append(File.generated(config, "index.md", content=readme))
    return files


def _as_code(text: str, target: str, path: Path) -> str:
    """A link to something the site has no page for: its repository path as inline code."""
    shown = path.relative_to(ROOT).as_posix() + ("/" if path.is_dir() else "")
    return f"`{shown}`" if text.strip("`") in (target, shown) else f"{text} (`{shown}`)"


def _rewrite(markdown: str, page_dir: Path) -> str:
    def link(m: re.Match) -> str:
        image, text, target = m.group(1), m.group(2), m.group(3)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):  # a URL, an anchor, an absolute path
            return m.group(0)
        path, _, anchor = target.partition("#")
        anchor = "#" + anchor if anchor else ""
        resolved = Path(posixpath.normpath((page_dir / path).as_posix()))
        in_docs = resolved == DOCS or DOCS in resolved.parents
        if image:
            if not resolved.exists() and RESULTS in page_dir.parents:
                return f"*(figure {text!r}: `{path}` is not kept in the repository)*"
            if page_dir == ROOT and in_docs:  # the README's figure, e.g. docs/results/x.png
                return f"![{text}]({posixpath.relpath(resolved.as_posix(), DOCS.as_posix())})"
            return m.group(0)
        if not resolved.exists():
            return m.group(0)  # broken: mkdocs reports it
        if not in_docs:
            return _as_code(text, target, resolved)
        if resolved.is_dir():
            page = next((p for p in ("README.md", "index.md", "report.md") if (resolved / p).exists()), None)
            if page is None:
                return _as_code(text, target, resolved)
            resolved = resolved / page
        # the README's links are relative to the repository root; the pages' to their folder
        new = posixpath.relpath(resolved.as_posix(), (DOCS if page_dir == ROOT else page_dir).as_posix())
        return f"[{text}]({new}{anchor})"

    # links inside fenced blocks are not links: rewrite only the prose between the blocks
    parts = re.split(r"(^```.*?^```[ \t]*$)", markdown, flags=re.S | re.M)
    return "".join(p if i % 2 else LINK.sub(link, p) for i, p in enumerate(parts))


def on_page_markdown(markdown, page, config, files):
    src = page.file.src_uri
    readme = src == "index.md" and not (DOCS / "index.md").exists()
    page_dir = ROOT if readme else DOCS / posixpath.dirname(src)
    return _rewrite(markdown, page_dir)
