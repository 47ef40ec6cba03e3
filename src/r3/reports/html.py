"""`report.html`: `report.md` rendered as one self-contained page, for a browser.

Every `.png` the report links is embedded as a `data:` URI, so the file can be mailed and still shows
its plots. The report quotes model output verbatim (`<answer>` tags, `<script>`), so raw HTML in the
markdown is escaped, never passed through, and only http(s), mailto and relative links are kept.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f1f1f1; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 0.2rem; border-radius: 3px; }
blockquote { border-left: 3px solid #c8c8c8; margin: 0.5rem 0; padding: 0 0.8rem; color: #333; }
img { max-width: 100%; height: auto; }
"""

_IMG = re.compile(r"<img ([^>]*?)/?>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_HREF = re.compile(r'href="([^"]*)"')
_SAFE_HREF = re.compile(r"^(https?:|mailto:|#|[^:]*$)", re.IGNORECASE)


def _inline_images(body: str, folder: Path) -> str:
    """Embed each image that is a PNG beside the report as a `data:` URI. Any other image (one that
    quoted model output spelled as markdown) becomes its alt text: the page never fetches anything."""

    def embed(match: re.Match[str]) -> str:
        attrs = dict(_ATTR.findall(match.group(1)))
        src, alt = html.unescape(attrs.get("src", "")), attrs.get("alt", "")
        path = folder / src
        if not re.fullmatch(r"[\w.-]+\.png", src) or not path.is_file():
            return alt
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img alt="{alt}" src="data:image/png;base64,{data}">'

    return _IMG.sub(embed, body)


def _safe_links(body: str) -> str:
    """Drop link targets with a scheme other than http(s) or mailto (`javascript:` in model output)."""
    return _HREF.sub(
        lambda m: m.group(0) if _SAFE_HREF.match(html.unescape(m.group(1))) else 'href="#"', body
    )


def write_html(report_md: str | Path) -> Path:
    """Write `report.html` beside `report_md` (its markdown as HTML, images inline, raw HTML escaped)
    and return its path."""
    path = Path(report_md)
    text = path.read_text()
    converter = markdown.Markdown(extensions=["tables", "fenced_code"], output_format="html")
    converter.preprocessors.deregister("html_block")  # raw HTML is escaped, never passed through
    converter.inlinePatterns.deregister("html")
    body = _safe_links(_inline_images(converter.convert(text), path.parent))
    heading = re.search(r"^# (.+)$", text, re.MULTILINE)
    title = html.escape(heading.group(1) if heading else "R3 report")
    target = path.with_suffix(".html")
    target.write_text(
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    return target
