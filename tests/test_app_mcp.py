"""The app as an MCP server (fast tier): the tiny fake-encoder collections served for real with
GRADIO_MCP_SERVER=true (as on a Space), its tools listed and called through the `mcp` client."""
import ast
import io

import httpx
import pytest
from conftest import free_port, mcp_session
from PIL import Image

SEARCHES = {"caption_search", "image_search", "omni_search", "composed_search"}


@pytest.fixture(scope="module")
def server(tiny, drive):
    from mosaic.app import serve

    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADIO_MCP_SERVER", "true")
        demo = serve([tiny.collection.path, drive.collection.path], host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}"
    demo.close()


def test_every_search_tab_is_a_tool_described_for_a_reader(server):
    tools = {t.name: t for t in mcp_session(server, lambda s: s.list_tools()).tools}
    assert SEARCHES | {"browse", "item_details", "scene_search"} <= set(tools)
    assert not {"result_note", "example_query", "extend"} & set(tools)  # the page's own events stay private
    text = tools["caption_search"]
    assert text.description.startswith("Find the images of a collection that a text describes best.")
    params = text.inputSchema["properties"]
    assert "library" not in params and params["text"]["description"].startswith("what the images should show")
    assert params["target"]["enum"] == ["image", "caption", "both"]
    assert set(params["collection"]["enum"]) == {"paintings", "drive"}


def test_text_search_tool_returns_hits_with_images_a_client_can_show(server):
    result = mcp_session(server, lambda s: s.call_tool(
        "caption_search", {"collection": "paintings", "text": "a red boat", "target": "image", "k": 3, "min_score": 0}))
    assert not result.isError
    gallery, hits = ast.literal_eval(result.content[0].text)  # the endpoint's two outputs, as one text
    assert [h["id"] for h in hits][0] == "red-boat.png" and len(gallery) == len(hits) == 3
    assert hits[0]["label"] == "A red boat at sea by Anna Alba" and hits[0]["score"] >= hits[-1]["score"]
    assert gallery[0]["caption"] == f"{hits[0]['strength']} · {hits[0]['label']}"
    url = gallery[0]["image"]["url"]
    assert url.startswith(f"{server}/gradio_api/file=")
    image = Image.open(io.BytesIO(httpx.get(url).raise_for_status().content))
    assert image.getpixel((2, image.height // 2))[0] > 150  # the red boat's red half


def test_a_users_mistake_is_a_one_line_tool_error(server):
    result = mcp_session(server, lambda s: s.call_tool("caption_search", {"collection": "paintings", "text": " ", "k": 3,
                                                                      "min_score": 0}))
    assert result.isError
    message = " ".join(c.text for c in result.content)
    assert "The query is empty" in message and "Traceback" not in message
