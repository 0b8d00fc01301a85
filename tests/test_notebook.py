"""The walkthrough notebook runs from top to bottom (so it never goes stale)."""
import os

import nbformat
import pytest
from conftest import DATA, ROOT, data_dir
from nbclient import NotebookClient

pytestmark = pytest.mark.slow


def test_walkthrough_notebook_executes(tmp_path, monkeypatch):
    data_dir("flickr8k-1k")
    monkeypatch.setenv("MOSAIC_DATA", str(DATA))
    monkeypatch.setenv("MOSAIC_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    text = "\n".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "query words" in text and "t2i random" in text and "num_rows: 200" in text
    assert os.path.exists(tmp_path / "walkthrough-publish" / "README.md")
