"""AUNet (OpenGraphAU structure) and the strict OpenGraphAU checkpoint import."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqdeca.au_names import (
    AFFWILD2_TO_MAIN,
    AU_OUTPUT_NAMES,
    MAIN_AU_NAMES,
    SUB_AU_NAMES,
    SUB_NODE_INDICES,
)
from seqdeca.io.weights import WeightsError
from seqdeca.models.au_graph import EdgeExtractor, GatedGraphLayer, SimilarityGraph
from seqdeca.models.au_import import load_opengraphau_checkpoint
from seqdeca.models.au_net import AUNet, affwild2_probabilities
from tests.au_factory import opengraphau_state_dict, write_opengraphau_checkpoint

C = 32  # tiny node channels


def tiny(stage: int, **kwargs) -> AUNet:
    torch.manual_seed(0)
    return AUNet(backbone="tiny", channels=C, stage=stage, **kwargs)


def images(n: int = 2, size: int = 96, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def tiny_state(stage: int, seed: int = 0) -> dict[str, torch.Tensor]:
    shapes = {f"backbone.{k}": tuple(v.shape) for k, v in tiny(1).backbone.state_dict().items()}
    return opengraphau_state_dict(stage=stage, channels=C, backbone=shapes, seed=seed)


def test_names_tables():
    assert len(AU_OUTPUT_NAMES) == 41 and len(MAIN_AU_NAMES) == 27 and len(SUB_AU_NAMES) == 14
    assert AU_OUTPUT_NAMES[26] == "AU39" and AU_OUTPUT_NAMES[27] == "L1"
    for name, index in AFFWILD2_TO_MAIN.items():
        assert MAIN_AU_NAMES[index] == name
    # Each (left, right) pair reads the main node of the same AU number, except OpenGraphAU's
    # quirk: L12/R12 read node 8 (AU11).
    read_from = [MAIN_AU_NAMES[node][2:] for node in SUB_NODE_INDICES]
    assert read_from == ["1", "2", "4", "6", "10", "11", "14"]
    assert [SUB_AU_NAMES[2 * p][1:] for p in range(7)] == ["1", "2", "4", "6", "10", "12", "14"]
    assert all(SUB_AU_NAMES[2 * p][1:] == SUB_AU_NAMES[2 * p + 1][1:] for p in range(7))


@pytest.mark.parametrize("stage", [1, 2])
def test_shapes_train_and_eval(stage):
    net = tiny(stage)
    x = images(size=96)  # 3 x 3 = 9 tokens
    out = net(x)
    assert out.afn_tokens.shape == out.au_tokens.shape == (2, 27, C)
    assert out.probabilities.shape == (2, 41) and out.main.shape == (2, 27)
    out.probabilities.sum().backward()
    assert net.head.main_sc.grad is not None and net.backbone.body[0].weight.grad is not None
    net.eval()
    with torch.no_grad():
        probs = net(x).probabilities
    assert probs.min() >= 0 and probs.max() <= 1 + 1e-6
    assert affwild2_probabilities(probs).shape == (2, 12)


def test_no_sub_outputs():
    net = tiny(1, num_sub=0).eval()
    assert net(images()).probabilities.shape == (2, 27)
    with pytest.raises(ValueError, match="num_sub"):
        AUNet(backbone="tiny", channels=C, num_sub=6)


@pytest.mark.parametrize("stage", [1, 2])
def test_probabilities_are_cosines_to_relu_prototypes(stage):
    net = tiny(stage).eval()
    with torch.no_grad():
        net.head.main_sc.normal_()  # mixed signs, so the ReLU matters
        net.head.sub_sc.normal_()
        out = net(images())
    nodes, main_sc, sub_sc = out.au_tokens, net.head.main_sc, net.head.sub_sc

    def cosine(a: torch.Tensor, proto: torch.Tensor) -> float:
        a, p = a.detach(), proto.detach().clamp_min(0)
        return float(a @ p / (a.norm() * p.norm()))

    for n in range(2):
        expected = [cosine(nodes[n, k], main_sc[k]) for k in range(27)]
        for p, node in enumerate(SUB_NODE_INDICES):
            expected += [
                cosine(nodes[n, node], sub_sc[2 * p]),
                cosine(nodes[n, node], sub_sc[2 * p + 1]),
            ]
        torch.testing.assert_close(
            out.probabilities[n], torch.tensor(expected), atol=1e-5, rtol=1e-5
        )
    assert (out.probabilities >= 0).all() and (out.probabilities <= 1 + 1e-6).all()


def test_normalisation_is_inside():
    net = tiny(1).eval()
    x = torch.full((1, 3, 64, 64), 0.5)
    x[:, 1] = 0.25
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        inside = net(x).probabilities
        manual = net.forward_normalised((x - mean) / std).probabilities
        raw = net.forward_normalised(x).probabilities
    torch.testing.assert_close(inside, manual)
    assert not torch.allclose(inside, raw)


def test_eval_outputs_do_not_depend_on_the_batch():
    for stage in (1, 2):
        net = tiny(stage).eval()
        x = images(3)
        with torch.no_grad():
            together = net(x).probabilities
            alone = net(x[1:2]).probabilities
        torch.testing.assert_close(together[1:2], alone, atol=1e-5, rtol=1e-5)


# ---- graph stages against slow references written from the equations -----------------------


def test_similarity_graph_matches_reference():
    torch.manual_seed(3)
    k, c = 6, 8
    graph = SimilarityGraph(channels=c, num_nodes=k, neighbours=3).eval()
    x = torch.randn(2, k, c)
    expected = torch.empty_like(x)
    for b in range(2):
        sim = x[b] @ x[b].T
        adj = torch.zeros(k, k)
        for i in range(k):
            adj[i, sim[i].argsort(descending=True)[:3]] = 1  # random data: no ties
        deg = adj.sum(1)
        norm_adj = adj / deg.sqrt()[:, None] / deg.sqrt()[None, :]
        pre = norm_adj @ graph.V(x[b]) + graph.U(x[b])  # (K, C)
        bn = graph.bnv  # eval: per-node affine from running statistics
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        pre = (pre - bn.running_mean[:, None]) * scale[:, None] + bn.bias[:, None]
        expected[b] = F.relu(x[b] + pre)
    torch.testing.assert_close(graph(x), expected, atol=1e-5, rtol=1e-5)


def _incidence(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K*K, K) one-hot sender (start) and receiver (end) of edge e = i*K + j."""
    start = torch.zeros(k * k, k)
    end = torch.zeros(k * k, k)
    for i in range(k):
        for j in range(k):
            start[i * k + j, j] = 1
            end[i * k + j, i] = 1
    return start, end


def test_gated_graph_layer_matches_incidence_form():
    torch.manual_seed(4)
    k, c = 5, 6
    layer = GatedGraphLayer(channels=c, num_nodes=k).eval()
    x, edges = torch.randn(2, k, c), torch.randn(2, k * k, c)
    start, end = _incidence(k)
    new_edges = edges + F.relu(layer.bne(end @ layer.A(x) + start @ layer.B(x) + layer.E(edges)))
    gate = torch.sigmoid(new_edges).view(2, k, k, c).softmax(dim=2).view(2, k * k, c)
    msg = end.T @ (gate * (start @ layer.V(x))) / k
    new_x = x + F.relu(layer.bnv(layer.U(x) + msg))
    got_x, got_edges = layer(x, edges)
    torch.testing.assert_close(got_edges, new_edges, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_x, new_x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_edge_extractor_matches_pairwise_form(train):
    torch.manual_seed(5)
    n, k, d, c = 2, 4, 3, 8
    gem = EdgeExtractor(channels=c, num_nodes=k).train(train)
    with torch.no_grad():  # non-trivial running statistics for the eval path
        gem.bn.running_mean.normal_()
        gem.bn.running_var.uniform_(0.5, 2.0)
        gem.bn.weight.normal_()
    per_au, tokens = torch.randn(n, k, d, c), torch.randn(n, d, c)
    feat = gem.FAM(per_au, tokens[:, None].expand(n, k, d, c))
    pairs = []
    for i in range(k):
        for j in range(k):  # sender j queries receiver i
            pairs.append(gem.ARM(feat[:, j], feat[:, i]))
    expected = gem.bn(gem.edge_proj(torch.stack(pairs, dim=1))).mean(dim=2)
    torch.testing.assert_close(gem(per_au, tokens), expected, atol=1e-5, rtol=1e-5)


# ---- checkpoint import --------------------------------------------------------------------


@pytest.mark.parametrize("stage", [1, 2])
def test_checkpoint_round_trip(tmp_path, stage):
    state = tiny_state(stage)
    path = write_opengraphau_checkpoint(tmp_path / "ckpt.pth", state)
    net = tiny(stage)
    report = load_opengraphau_checkpoint(path, net)
    assert report.complete and len(report.loaded) == len(state) == len(net.state_dict())
    loaded = net.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value, msg=key)


def test_stage_mismatch_is_refused(tmp_path):
    path2 = write_opengraphau_checkpoint(tmp_path / "s2.pth", tiny_state(2))
    with pytest.raises(WeightsError, match="stage-2 checkpoint but the AUNet is stage 1"):
        load_opengraphau_checkpoint(path2, tiny(1))
    path1 = write_opengraphau_checkpoint(tmp_path / "s1.pth", tiny_state(1))
    with pytest.raises(WeightsError, match="stage-1 checkpoint but the AUNet is stage 2"):
        load_opengraphau_checkpoint(path1, tiny(2))


def test_missing_and_mis_shaped_head_keys_are_refused(tmp_path):
    state = tiny_state(1)
    del state["head.main_sc"]
    path = write_opengraphau_checkpoint(tmp_path / "a.pth", state)
    with pytest.raises(WeightsError, match=r"1 missing \(head\.main_sc\)"):
        load_opengraphau_checkpoint(path, tiny(1))
    state = tiny_state(1) | {"head.sub_sc": torch.zeros(12, C)}
    path = write_opengraphau_checkpoint(tmp_path / "b.pth", state)
    with pytest.raises(WeightsError, match="mis-shaped"):
        load_opengraphau_checkpoint(path, tiny(1))
    with pytest.raises(WeightsError, match="not found"):
        load_opengraphau_checkpoint(tmp_path / "nope.pth", tiny(1))


def test_old_files_without_batch_counters_and_swin_files(tmp_path):
    state = {k: v for k, v in tiny_state(1).items() if not k.endswith("num_batches_tracked")}
    path = write_opengraphau_checkpoint(tmp_path / "old.pth", state)
    assert load_opengraphau_checkpoint(path, tiny(1)).complete
    swin = tiny_state(1) | {"backbone.layers.0.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}
    path = write_opengraphau_checkpoint(tmp_path / "swin.pth", swin)
    with pytest.raises(WeightsError, match="Swin"):
        load_opengraphau_checkpoint(path, tiny(1))


def test_full_resnet50_stage2_checkpoint(tmp_path):
    """The real layout: ResNet-50 keys written independently of timm, C = 512, one forward."""
    state = opengraphau_state_dict(stage=2)
    path = write_opengraphau_checkpoint(tmp_path / "mefl.pth", state)
    net = AUNet(backbone="resnet50", stage=2)
    report = load_opengraphau_checkpoint(path, net)
    assert report.complete and len(report.loaded) == len(state)
    torch.testing.assert_close(
        net.state_dict()["backbone.layer4.2.conv3.weight"], state["backbone.layer4.2.conv3.weight"]
    )
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 224, 224))
    assert out.au_tokens.shape == (1, 27, 512) and out.probabilities.shape == (1, 41)
    assert (out.probabilities >= 0).all() and (out.probabilities <= 1 + 1e-6).all()
