import numpy as np
import pytest
from PIL import Image

from causal_wm.scm import erdos_renyi_dag
from causal_wm.viz import graph_layout, image_grid, plot_curves, plot_graphs, plot_matrix


def _png_size(path):
    with Image.open(path) as im:
        return im.size


def test_figures_are_written(tmp_path):
    A = erdos_renyi_dag(5, edge_prob=0.5, seed=0)
    B = A.copy()
    B[0, :] = 0
    plot_graphs(A, B, path=tmp_path / "g.png")
    plot_matrix(np.eye(4), path=tmp_path / "m.png", title="MCC")
    images = np.random.default_rng(0).integers(0, 255, size=(6, 8, 8, 3), dtype=np.uint8)
    image_grid(images, rows=2, row_labels=["a", "b"], path=tmp_path / "i.png")
    plot_curves({"x": ([0, 1], [1, 2])}, xlabel="x", ylabel="y", path=tmp_path / "c.png")
    for name in ["g", "m", "i", "c"]:
        w, h = _png_size(tmp_path / f"{name}.png")
        assert w > 50 and h > 50


def test_layout_puts_every_node_on_the_unit_circle():
    pos = graph_layout(erdos_renyi_dag(7, edge_prob=0.4, seed=1))
    np.testing.assert_allclose(np.linalg.norm(pos, axis=1), 1.0)
    assert len({tuple(np.round(p, 6)) for p in pos}) == 7


def test_bad_inputs():
    with pytest.raises(ValueError, match="cycle"):
        plot_graphs(np.array([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="images must be"):
        image_grid(np.zeros((2, 2)))
