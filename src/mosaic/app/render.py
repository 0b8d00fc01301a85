"""The app's HTML and Markdown: explanation chips, "Why this match?", ranked humor answers, a
scene's timeline, an item's details. Every text from a user or a collection is escaped."""
from __future__ import annotations

import html
import re
from collections.abc import Callable

NO_SCENES_TEXT = "This collection has no scenes: pick a driving collection above to play one."
NO_SCENES = f"<p>{NO_SCENES_TEXT}</p>"
SCORE_MODES = {
    "composed:sum": "how much the image looks like the reference with your change mixed in",
    "composed:slerp": "how much the image looks like the reference turned towards your change",
    "composed:text": "how well the image and its captions match the reference's caption with your change",
    "both": "how well the image and its closest caption match the text (the mean of the two)",
    "omni": "how far the text match and each tag lift this image above the average one (tags count half)",
    "caption": "how well the image's closest caption matches the text",
    "image": "how much the image looks like the query",
}
STRENGTH = ("Match strength, 0-100: 0 is what an average image of the collection scores for this query, "
            "100 is four standard deviations above it")
GENERATED = "Generated caption (a model's guess)"
GREEN, BLUE, PURPLE, RED = "34,197,94", "59,130,246", "168,85,247", "239,68,68"


def tag_name(tag: str) -> str:
    """A tag as a person reads it: `objects:dog` is "dog", `mood:calm` is "calm (mood)"."""
    group, _, name = tag.rpartition(":")
    return name if group in ("", "objects", "object") else f"{name} ({group.replace('_', ' ')})"


def chips(items: list[tuple[str, float]], color: str, fmt: str = "{:.2f}") -> str:
    """Words or tags as chips whose shading follows their weight (`color` up, red down)."""
    top = max((abs(v) for _, v in items), default=0) or 1
    out = []  # shading up to 0.5: the page's text, dark or light, stays above 4.5:1 contrast on it
    for text, v in items:
        rgb = color if v >= 0 else RED
        out.append(f'<span class="chip" title="{fmt.format(v)}" style="background:rgba({rgb},{0.12 + 0.38 * abs(v) / top:.2f});'
                   f'padding:1px 6px;margin:2px;border-radius:8px;display:inline-block">{html.escape(text)} '
                   f'<small>{fmt.format(v)}</small></span>')
    return "".join(out)


def why_html(hits: list[dict] | None, index: int) -> str:
    """"Why this match?" for one hit: the score's parts, the query words by contribution, the
    caption words closest to the query, the tags it shares with the query, the captions people
    wrote and its generated caption."""
    if not hits or not 0 <= index < len(hits):
        return "<p>Select a result to see why it matched.</p>"
    h, e = hits[index], hits[index]["explanation"]
    name = h.get("label") or h["id"]
    strength = f'match {h["strength"]}/100' if "strength" in h else f'score {h["score"]:.3f}'
    out = [f'<div class="why"><h3>#{index + 1} {html.escape(name)}: <span title="{STRENGTH}">{strength}</span></h3>',
           f'<p title="raw score {h["score"]:.3f} · id {html.escape(h["id"])}"><b>Score</b>: '
           f"{SCORE_MODES.get(e.get('mode'), '')}</p>"]
    if len(e.get("parts", {})) > 1:
        out.append(parts_bar(e["parts"], tag_name if e.get("mode") == "omni" else str))
    if e.get("query_words"):
        out.append('<p class="query-words"><b>Query words</b> '
                   "(what each adds to this match; a minus: it pulls away from this image): "
                   + chips([(w["word"], w["contribution"]) for w in e["query_words"]], GREEN, "{:+.3f}") + "</p>")
    if e.get("caption_words"):
        out.append("<p><b>Caption words closest to the query</b>: "
                   + chips([(w["word"], w["similarity"]) for w in e["caption_words"]], BLUE) + "</p>")
    # Only the tags that really lift the score: well above the collection's baseline for both the
    # query and the hit (a product of at least 1 sd x 1 sd), and a third of the strongest at least.
    top = max((t["score"] for t in e.get("tags", [])), default=0)
    tags = [(tag_name(t["tag"]), t["score"]) for t in e.get("tags", []) if t["score"] >= max(1.0, top / 3)]
    if tags:
        out.append('<p><b title="tags (zero-shot labels) that both the query and this image score above the '
                   'collection\'s average">Both lean towards</b>: ' + chips(tags, PURPLE, "") + "</p>")
    if e.get("mode", "").startswith("composed:"):
        out.append(f"<p><b>Query</b>: {html.escape(e['query'])}</p>")
        asked = [(tag_name(t["tag"]), t["change"]) for t in e.get("tags_asked", [])]
        if asked:
            out.append('<p class="tag-asked"><b title="the tags closest to the words of the change, and how much more '
                       '(green) or less (red) this result shows them than the reference">What the words asked for</b>: '
                       + chips(asked, GREEN, "{:+.1f}") + "</p>")
        changes = [(tag_name(t["tag"]), t["change"]) for t in e["tags_up"] + e["tags_down"]]
        out.append('<p class="tag-changes"><b title="tags this result scores higher (green) or lower (red) than '
                   f'the reference">{"Other changes" if asked else "What changed from the reference"}</b>: '
                   + chips(changes, GREEN, "{:+.1f}") + "</p>")
    if e.get("captions"):
        out.append("<p><b>Captions written by people</b></p><ul>"
                   + "".join(f"<li>{html.escape(tidy(c))}</li>" for c in e["captions"]) + "</ul>")
    if h.get("caption"):
        out.append(f"<p><b>{GENERATED}</b>: {html.escape(h['caption'])}</p>")
    return "".join(out) + "</div>"


def parts_bar(parts: dict[str, float], name: Callable[[str], str] = str) -> str:
    """The parts of a fused score as one bar, each part's width its share (negative parts in red),
    with the numbers under it; `name` says how a part reads (tag_name for Omni's tags)."""
    total = sum(abs(v) for v in parts.values()) or 1
    colors = [GREEN, BLUE, PURPLE, "234,179,8"]
    segs, legend = [], []
    for i, (n, v) in enumerate(parts.items()):
        rgb = colors[i % len(colors)] if v >= 0 else RED
        segs.append(f'<div title="{html.escape(name(n))} {v:+.3f}" style="width:{100 * abs(v) / total:.1f}%;'
                    f'background:rgb({rgb})"></div>')
        legend.append(f'<span style="color:rgb({rgb})">■</span> {html.escape(name(n))} {v:+.2f}')
    return ('<div class="parts"><div style="display:flex;height:10px;border-radius:5px;overflow:hidden">'
            + "".join(segs) + "</div><small>" + " · ".join(legend) + "</small></div>")


def humor_html(prompt: str, ranked: list[dict]) -> str:
    """Answers ranked by score, each with its words shaded by how much they add to it."""
    out = [f'<div class="humor"><p><b>Prompt</b>: {html.escape(prompt)}</p><ol>']
    for r in ranked:
        out.append(f'<li><b>{r["score"]:.2f}</b> {html.escape(r["answer"])}<br><small>words (score lost without '
                   f'each)</small>: {chips([(w["word"], w["contribution"]) for w in r["words"]], GREEN, "{:+.2f}")}</li>')
    return "".join(out) + "</ol></div>"


def timeline_html(frames: list[dict] | None, current: int) -> str:
    """A scene's frames as a strip: bar height = match score, the best matches marked, the
    frame on screen (`current`, counted from 1 like everything the viewer sees) outlined."""
    if not frames:
        return ""
    scores = [f["score"] for f in frames if f["score"] is not None]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 0.0)
    cells = []
    for i, f in enumerate(frames, 1):
        level = 0.3 if f["score"] is None or hi == lo else 0.15 + 0.85 * (f["score"] - lo) / (hi - lo)
        color = "#f59e0b" if f["match"] else "#93c5fd"
        border = "2px solid var(--body-text-color, #111)" if i == current else "2px solid transparent"
        title = f"frame {i}" + ("" if f.get("strength") is None else f" · match {f['strength']}")
        mark = "▲" if f["match"] else "&nbsp;"
        cells.append(f'<div data-frame="{i}" title="{title}" style="flex:1;display:flex;flex-direction:column;'
                     f'justify-content:flex-end;align-items:center;cursor:pointer;border:{border}">'
                     f'<div style="width:100%;height:{level * 48:.0f}px;'
                     f'background:{color}"></div><small>{mark}</small></div>')
    matches = [str(i) for i, f in enumerate(frames, 1) if f["match"]]
    legend = (f"▲ best matches: frames {', '.join(matches)} (click a frame to see it)" if matches
              else "search the scene to mark its matching frames")
    return (f'<div class="timeline" style="display:flex;gap:1px;height:70px">{"".join(cells)}</div>'
            f"<small>frame {current} of {len(frames)} · {legend}</small>")


def tidy(text: str) -> str:
    """A tokenised caption as people write it: Flickr8k's "a dog 's ball ." reads "a dog's ball"."""
    text = re.sub(r"\s+([.,!?;:]|'s\b|n't\b|'re\b|'ll\b|'ve\b|'m\b|'d\b)", r"\1", text)
    return text.strip().rstrip(".").strip()


def md_text(value) -> str:
    """A collection's text for Markdown: tags in it are shown, not read."""
    return html.escape(str(value), quote=False)


def details_markdown(d: dict) -> str:
    """An item's details (SearchService.details) as Markdown: its label, id, generated caption (if
    any), the captions people wrote, the tags it stands out for, metadata."""
    text = [f"### {md_text(d.get('label') or d['id'])}", f"id: {md_text(d['id'])}"]
    if d["caption"]:
        text.append(f"**{GENERATED}**: {md_text(d['caption'])}")
    if d["captions"]:
        text.append("**Captions written by people**\n" + "\n".join(f"- {md_text(tidy(c))}" for c in d["captions"]))
    standout = [md_text(tag_name(t["tag"])) for t in d["tags"] if t["z"] > 0]
    if standout:
        text.append("**Stands out for** (tags it scores above the collection's average): " + ", ".join(standout))
    text.append("**Metadata**\n" + "\n".join(f"- {md_text(k)}: {md_text(v)}" for k, v in d["metadata"].items()))
    return "\n\n".join(text)


def frame_markdown(d: dict, strength: int | None) -> str:
    """A line about a scene's frame: its id, its match strength when searched, its caption."""
    match = "" if strength is None else f" · match {strength}/100"
    return f"**{md_text(d['id'])}**{match}: {md_text(d['caption'])}"
