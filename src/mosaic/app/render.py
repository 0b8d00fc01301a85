"""The app's HTML and Markdown: explanation chips, "Why this match?", ranked humor answers, a
scene's timeline, an item's details. Every text from a user or a collection is escaped."""
from __future__ import annotations

import html

NO_SCENES = "<p>This collection has no scenes.</p>"
SCORE_MODES = {
    "composed:sum": "image-embedding similarity to the weighted sum of reference and text",
    "composed:slerp": "image-embedding similarity to the reference turned towards the text",
    "composed:text": "mean of image and best-caption similarity to the merged query",
    "both": "mean of image and best-caption similarity",
    "omni": "sum of z-scored text match and tag weights",
    "caption": "similarity to the closest caption",
    "image": "image-embedding similarity",
}
GREEN, BLUE, PURPLE, RED = "34,197,94", "59,130,246", "168,85,247", "239,68,68"


def chips(items: list[tuple[str, float]], color: str, fmt: str = "{:.2f}") -> str:
    """Words or tags as chips whose shading follows their weight (`color` up, red down)."""
    top = max((abs(v) for _, v in items), default=0) or 1
    out = []
    for text, v in items:
        rgb = color if v >= 0 else RED
        out.append(f'<span class="chip" title="{fmt.format(v)}" style="background:rgba({rgb},{0.15 + 0.7 * abs(v) / top:.2f});'
                   f'padding:1px 6px;margin:2px;border-radius:8px;display:inline-block">{html.escape(text)} '
                   f'<small>{fmt.format(v)}</small></span>')
    return "".join(out)


def why_html(hits: list[dict] | None, index: int) -> str:
    """"Why this match?" for one hit: the score's parts, the query words by contribution, the
    caption words closest to the query, the tags it shares with the query, its captions."""
    if not hits or not 0 <= index < len(hits):
        return "<p>Select a result to see why it matched.</p>"
    h, e = hits[index], hits[index]["explanation"]
    out = [f'<div class="why"><h3>#{index + 1} {html.escape(h["id"])}: score {h["score"]:.3f}</h3>',
           f"<p><b>Score</b>: {SCORE_MODES.get(e.get('mode'), '')}</p>"]
    if len(e.get("parts", {})) > 1:
        out.append("<table>" + "".join(f"<tr><td>{html.escape(n)}</td><td>{v:+.3f}</td></tr>"
                                       for n, v in e["parts"].items()) + "</table>")
    if e.get("query_words"):
        out.append('<p class="query-words"><b>Query words</b> (score lost without each): '
                   + chips([(w["word"], w["contribution"]) for w in e["query_words"]], GREEN, "{:+.3f}") + "</p>")
    if e.get("caption_words"):
        out.append("<p><b>Caption words closest to the query</b>: "
                   + chips([(w["word"], w["similarity"]) for w in e["caption_words"]], BLUE) + "</p>")
    if e.get("tags"):
        out.append("<p><b>Tags shared with the query</b>: "
                   + chips([(t["tag"], t["score"]) for t in e["tags"]], PURPLE) + "</p>")
    if e.get("mode", "").startswith("composed:"):
        out.append(f"<p><b>Query</b>: {html.escape(e['query'])}</p>")
        changes = [(t["tag"], t["change"]) for t in e["tags_up"] + e["tags_down"]]
        out.append('<p class="tag-changes"><b>What changed from the reference</b> (tag z-score, hit minus reference): '
                   + chips(changes, GREEN, "{:+.2f}") + "</p>")
    if e.get("captions"):
        out.append("<p><b>Captions</b></p><ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in e["captions"]) + "</ul>")
    return "".join(out) + "</div>"


def humor_html(prompt: str, ranked: list[dict]) -> str:
    """Answers ranked by score, each with its words shaded by how much they add to it."""
    out = [f'<div class="humor"><p><b>Prompt</b>: {html.escape(prompt)}</p><ol>']
    for r in ranked:
        out.append(f'<li><b>{r["score"]:.2f}</b> {html.escape(r["answer"])}<br><small>words (score lost without '
                   f'each)</small>: {chips([(w["word"], w["contribution"]) for w in r["words"]], GREEN, "{:+.2f}")}</li>')
    return "".join(out) + "</ol></div>"


def timeline_html(frames: list[dict] | None, current: int) -> str:
    """A scene's frames as a strip: bar height = match score, the best matches marked, the
    frame on screen outlined."""
    if not frames:
        return ""
    scores = [f["score"] for f in frames if f["score"] is not None]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 0.0)
    cells = []
    for i, f in enumerate(frames):
        level = 0.3 if f["score"] is None or hi == lo else 0.15 + 0.85 * (f["score"] - lo) / (hi - lo)
        color = "#f59e0b" if f["match"] else "#93c5fd"
        border = "2px solid #111" if i == current else "2px solid transparent"
        title = f"frame {i}" + ("" if f["score"] is None else f" · {f['score']:.3f}")
        mark = "▲" if f["match"] else "&nbsp;"
        cells.append(f'<div title="{title}" style="flex:1;display:flex;flex-direction:column;justify-content:flex-end;'
                     f'align-items:center;border:{border}"><div style="width:100%;height:{level * 48:.0f}px;'
                     f'background:{color}"></div><small>{mark}</small></div>')
    matches = [str(i) for i, f in enumerate(frames) if f["match"]]
    legend = f"best matches: frames {', '.join(matches)}" if matches else "search the scene to mark matching frames"
    return (f'<div class="timeline" style="display:flex;gap:1px;height:70px">{"".join(cells)}</div>'
            f"<small>frame {current + 1} of {len(frames)} · {legend}</small>")


def _text(value) -> str:
    """A collection's text for Markdown: tags in it are shown, not read."""
    return html.escape(str(value), quote=False)


def details_markdown(d: dict) -> str:
    """An item's details (SearchService.details) as Markdown: id, generated caption, captions,
    strongest tags, metadata."""
    text = [f"### {_text(d['id'])}", f"**Generated caption**: {_text(d['caption'] or '(none)')}"]
    if d["captions"]:
        text.append("**Captions**\n" + "\n".join(f"- {_text(c)}" for c in d["captions"]))
    text.append("**Strongest tags**: " + ", ".join(f"{_text(t['tag'])} ({t['z']:+.1f} sd)" for t in d["tags"]))
    text.append("**Metadata**\n" + "\n".join(f"- {_text(k)}: {_text(v)}" for k, v in d["metadata"].items()))
    return "\n\n".join(text)


def frame_markdown(d: dict, score: float | None) -> str:
    """A line about a scene's frame: its id, its match score when searched, its caption."""
    match = "" if score is None else f" · match {score:.3f}"
    return f"**{_text(d['id'])}**{match}: {_text(d['caption'])}"
