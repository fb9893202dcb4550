"""Networks: coarse encoder, AU network, temporal fusion, AU head, detail stage, weight import.

Legacy names (for readers of the original research code): ``E_flame`` -> :class:`CoarseEncoder`,
``E_detail`` -> :class:`DetailEncoder`, ``D_detail`` / ``Generator3`` -> :class:`DetailGenerator`,
``AUNet`` / ``afn`` -> :class:`AUNet` / ``AUNetOutput.afn_tokens``, ``BiViT`` ->
:class:`TemporalFusion`, ``ConditionalDiscriminator`` -> :class:`DetailCritic`.
"""

from seqdeca.io.weights import LoadReport, WeightsError, load_weights
from seqdeca.models.au_head import AUHead
from seqdeca.models.au_net import AUNet, AUNetOutput
from seqdeca.models.coarse_encoder import CoarseEncoder, EncoderOutput
from seqdeca.models.code_layout import CodeLayout
from seqdeca.models.critic import DetailCritic
from seqdeca.models.detail import DetailEncoder, DetailGenerator
from seqdeca.models.outputs import Decoded, DetailOutput, Encoded, Fused, SeqDECAOutput
from seqdeca.models.temporal_fusion import FusionOutput, TemporalFusion

__all__ = [
    "AUHead",
    "AUNet",
    "AUNetOutput",
    "CoarseEncoder",
    "CodeLayout",
    "Decoded",
    "DetailCritic",
    "DetailEncoder",
    "DetailGenerator",
    "DetailOutput",
    "Encoded",
    "EncoderOutput",
    "Fused",
    "FusionOutput",
    "LoadReport",
    "SeqDECAOutput",
    "TemporalFusion",
    "WeightsError",
    "load_weights",
]
