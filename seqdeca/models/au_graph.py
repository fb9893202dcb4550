"""Graph stages of the AU network: they refine the per-AU node tokens, shape unchanged.

Two variants, matching the two released OpenGraphAU heads (attribute names are the checkpoint's
key names, which is why some are single capitals):

* stage 1 (ANFL): :class:`SimilarityGraph` -- each node links to its top-K most similar nodes
  (dot product of the detached features), the symmetric-normalised adjacency ``D^-1/2 A D^-1/2``
  aggregates ``V(x)``, and ``x <- ReLU(x + BN(A V(x) + U(x)))``.
  Keys: ``gnn.U.*``, ``gnn.V.*``, ``gnn.bnv.*``.
* stage 2 (MEFL): :class:`EdgeExtractor` builds one C-dim feature per ordered node pair from the
  per-token AU features (two cross-attentions, FAM then ARM), and :class:`GatedGraph` runs two
  gated GCN layers that update node and edge features together.
  Keys: ``edge_extractor.{FAM,ARM}.linear_{q,k,v}.*``, ``edge_extractor.edge_proj.*``,
  ``edge_extractor.bn.*``, ``gnn.graph_layers.{0,1}.{U,V,A,B,E}.weight``,
  ``gnn.graph_layers.{0,1}.{bnv,bne}.*``.

Edges are indexed ``e = i * K + j`` for the ordered pair (i, j): i is the node that RECEIVES the
message ("end"), j the node that sends it ("start").

Every BatchNorm here normalises over the node (or edge) axis, i.e. per AU across the batch and
channels: statistics depend on the batch in train mode, so a frozen network must stay in eval().

Shapes: N images, K nodes (27 AUs), C channels, D tokens per image (49 for ResNet-50 at 224).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SimilarityGraph(nn.Module):
    """Stage-1 graph layer: top-K dot-product graph and one residual GCN update.

    Args:
        channels: C.
        num_nodes: K.
        neighbours: top-K neighbours per node (self included, since a node is most similar to
            itself under the dot product in general; ties may add more).
        metric: "dots" (raw dot product, OpenGraphAU's default) or "cosine".
    """

    def __init__(self, *, channels: int, num_nodes: int, neighbours: int = 4, metric: str = "dots"):
        super().__init__()
        if metric not in ("dots", "cosine"):
            raise ValueError(f"metric must be 'dots' or 'cosine', got {metric!r}")
        if not 1 <= neighbours <= num_nodes:
            raise ValueError(f"neighbours must be in [1, {num_nodes}], got {neighbours}")
        self.neighbours = neighbours
        self.metric = metric
        self.U = nn.Linear(channels, channels)
        self.V = nn.Linear(channels, channels)
        self.bnv = nn.BatchNorm1d(num_nodes)
        std = math.sqrt(2.0 / channels)
        nn.init.normal_(self.U.weight, 0.0, std)
        nn.init.normal_(self.V.weight, 0.0, std)

    def adjacency(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised top-K adjacency ``D^-1/2 A D^-1/2`` (no gradient through the graph).

        Args:
            x: (N, K, C) node features.

        Returns:
            (N, K, K); row i has non-zeros at the nodes most similar to node i.
        """
        feats = x.detach()
        if self.metric == "cosine":
            feats = F.normalize(feats, p=2, dim=-1)
        similarity = feats @ feats.transpose(1, 2)  # (N, K, K)
        kth_best = similarity.topk(self.neighbours, dim=-1).values[..., -1:]  # (N, K, 1)
        links = (similarity >= kth_best).to(x.dtype)
        inv_sqrt_degree = links.sum(dim=-1).rsqrt()  # (N, K), degree >= neighbours >= 1
        return inv_sqrt_degree[:, :, None] * links * inv_sqrt_degree[:, None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, C) -> (N, K, C)."""
        messages = self.adjacency(x) @ self.V(x)
        return F.relu(x + self.bnv(messages + self.U(x)))


class CrossAttention(nn.Module):
    """Single-head cross-attention with a C/2-dim query/key space (keys ``linear_{q,k,v}``).

    Args:
        channels: C (values keep C channels; queries and keys use C // 2).
    """

    def __init__(self, *, channels: int):
        super().__init__()
        half = channels // 2
        self.linear_q = nn.Linear(channels, half)
        self.linear_k = nn.Linear(channels, half)
        self.linear_v = nn.Linear(channels, channels)
        self.scale = half**-0.5
        nn.init.normal_(self.linear_q.weight, 0.0, math.sqrt(2.0 / half))
        nn.init.normal_(self.linear_k.weight, 0.0, math.sqrt(2.0 / half))
        nn.init.normal_(self.linear_v.weight, 0.0, math.sqrt(2.0 / channels))

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(..., Dq, C) attending over (..., Dk, C) -> (..., Dq, C)."""
        weights = (self.linear_q(queries) @ self.linear_k(context).transpose(-2, -1)) * self.scale
        return weights.softmax(dim=-1) @ self.linear_v(context)


class EdgeExtractor(nn.Module):
    """Stage-2 edge features (OpenGraphAU's GEM) from per-token AU features.

    FAM: each AU's tokens attend over the global tokens. ARM: for the pair (i, j), the tokens of
    node j (sender) attend over the tokens of node i (receiver). A linear projection and a
    BatchNorm over the K*K edge axis follow; the mean over tokens gives one vector per edge.

    Args:
        channels: C.
        num_nodes: K.
    """

    def __init__(self, *, channels: int, num_nodes: int):
        super().__init__()
        self.FAM = CrossAttention(channels=channels)
        self.ARM = CrossAttention(channels=channels)
        self.edge_proj = nn.Linear(channels, channels)
        self.bn = nn.BatchNorm2d(num_nodes * num_nodes)
        nn.init.normal_(self.edge_proj.weight, 0.0, math.sqrt(2.0 / channels))

    def forward(self, au_token_features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Edge features.

        Args:
            au_token_features: (N, K, D, C) per-AU features of every token.
            tokens: (N, D, C) the shared (global) tokens.

        Returns:
            (N, K*K, C), edge ``i*K + j`` for receiver i and sender j.
        """
        n, k, d, c = au_token_features.shape
        attended = self.FAM(au_token_features, tokens[:, None].expand(n, k, d, c))  # (N,K,D,C)
        # The linear maps act per token, so they can run before the pairs are formed:
        # queries from the sender j, keys and values from the receiver i.
        arm = self.ARM
        q = arm.linear_q(attended)  # (N, K, D, C/2)
        key = arm.linear_k(attended)
        value = arm.linear_v(attended)  # (N, K, D, C)
        logits = torch.einsum("njdh,nieh->nijde", q, key) * arm.scale  # (N, K_i, K_j, D, D)
        weights = logits.softmax(dim=-1)
        if self.training or not self.bn.track_running_stats:
            paired = torch.einsum("nijde,niec->nijdc", weights, value)
            edges = self.bn(self.edge_proj(paired.reshape(n, k * k, d, c)))  # (N, K*K, D, C)
            return edges.mean(dim=2)
        # Eval: BN is a per-edge affine map, so the token mean can move before the value sum,
        # the projection and the BN (exact, and ~D times cheaper).
        pooled = torch.einsum("nije,niec->nijc", weights.mean(dim=3), value)  # (N, K, K, C)
        projected = self.edge_proj(pooled.reshape(n, k * k, c))
        bn = self.bn
        return F.batch_norm(
            projected, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
        )


class GatedGraphLayer(nn.Module):
    """One gated GCN layer over nodes and edges (OpenGraphAU stage 2).

    edge_ij <- edge_ij + ReLU(BN_e(A x_i + B x_j + E edge_ij))
    gate_ij = softmax over senders j of sigmoid(edge_ij)   (per channel)
    x_i <- x_i + ReLU(BN_v(U x_i + (1/K) sum_j gate_ij * V x_j))

    Args:
        channels: C.
        num_nodes: K.
    """

    def __init__(self, *, channels: int, num_nodes: int):
        super().__init__()
        self.num_nodes = num_nodes
        for name in ("U", "V", "A", "B", "E"):
            layer = nn.Linear(channels, channels, bias=False)
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / channels))
            setattr(self, name, layer)
        self.bnv = nn.BatchNorm1d(num_nodes)
        self.bne = nn.BatchNorm1d(num_nodes * num_nodes)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, C) nodes and (N, K*K, C) edges -> updated (nodes, edges), same shapes."""
        n, k, c = x.shape
        receiver = self.A(x)[:, :, None, :]  # (N, K_i, 1, C)
        sender = self.B(x)[:, None, :, :]  # (N, 1, K_j, C)
        update = (receiver + sender).reshape(n, k * k, c) + self.E(edges)
        edges = edges + F.relu(self.bne(update))
        gate = torch.sigmoid(edges).view(n, k, k, c).softmax(dim=2)  # normalised over senders
        messages = torch.einsum("nijc,njc->nic", gate, self.V(x)) / self.num_nodes
        x = x + F.relu(self.bnv(self.U(x) + messages))
        return x, edges


class GatedGraph(nn.Module):
    """A stack of :class:`GatedGraphLayer` (key ``graph_layers.{i}``; OpenGraphAU uses 2).

    Args:
        channels: C.
        num_nodes: K.
        num_layers: number of layers.
    """

    def __init__(self, *, channels: int, num_nodes: int, num_layers: int = 2):
        super().__init__()
        self.graph_layers = nn.ModuleList(
            GatedGraphLayer(channels=channels, num_nodes=num_nodes) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, C), (N, K*K, C) -> refined nodes and edges, same shapes."""
        for layer in self.graph_layers:
            x, edges = layer(x, edges)
        return x, edges
