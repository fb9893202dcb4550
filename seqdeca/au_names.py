"""Names and index tables of the AU network's outputs (OpenGraphAU / MEFARG layout).

The AU network (:class:`seqdeca.models.au_net.AUNet`) predicts 41 probabilities per image: 27
"main" facial action units followed by 14 left/right variants of seven of them. The order below
is the order of the released OpenGraphAU checkpoints and must not change.

* ``AU_OUTPUT_NAMES``: the 41 outputs, in order.
* ``MAIN_AU_NAMES``: the first 27 (one graph node each).
* ``SUB_AU_NAMES``: the last 14, as (left, right) pairs.
* ``SUB_NODE_INDICES``: for each pair, the main node it is read from: 0, 1, 2, 4, 7, 8, 11
  (AU1, AU2, AU4, AU6, AU10, AU11, AU14). Quirk kept from OpenGraphAU (its ``sub_list``): the
  L12/R12 pair reads node 8, which is AU11 in the output order, not AU12 (node 9). The released
  weights were trained that way, so changing it would break them.
* ``AFFWILD2_TO_MAIN``: Aff-Wild2's 12 annotated AUs -> index among the 27 main outputs.
"""

from __future__ import annotations

MAIN_AU_NAMES: tuple[str, ...] = (
    "AU1",
    "AU2",
    "AU4",
    "AU5",
    "AU6",
    "AU7",
    "AU9",
    "AU10",
    "AU11",
    "AU12",
    "AU13",
    "AU14",
    "AU15",
    "AU16",
    "AU17",
    "AU18",
    "AU19",
    "AU20",
    "AU22",
    "AU23",
    "AU24",
    "AU25",
    "AU26",
    "AU27",
    "AU32",
    "AU38",
    "AU39",
)

SUB_AU_NAMES: tuple[str, ...] = (
    "L1",
    "R1",
    "L2",
    "R2",
    "L4",
    "R4",
    "L6",
    "R6",
    "L10",
    "R10",
    "L12",
    "R12",
    "L14",
    "R14",
)

AU_OUTPUT_NAMES: tuple[str, ...] = MAIN_AU_NAMES + SUB_AU_NAMES

# Main node feeding each (left, right) pair of SUB_AU_NAMES, in pair order (8 = AU11 feeds
# L12/R12: OpenGraphAU's quirk, kept for its weights).
SUB_NODE_INDICES: tuple[int, ...] = (0, 1, 2, 4, 7, 8, 11)

NUM_MAIN_AUS = len(MAIN_AU_NAMES)  # 27
NUM_SUB_AUS = len(SUB_AU_NAMES)  # 14
NUM_AU_OUTPUTS = len(AU_OUTPUT_NAMES)  # 41

# Aff-Wild2 (ABAW) annotates 12 AUs; their positions among the 27 main outputs.
AFFWILD2_TO_MAIN: dict[str, int] = {
    "AU1": 0,
    "AU2": 1,
    "AU4": 2,
    "AU6": 4,
    "AU7": 5,
    "AU10": 7,
    "AU12": 9,
    "AU15": 12,
    "AU23": 19,
    "AU24": 20,
    "AU25": 21,
    "AU26": 22,
}
AFFWILD2_AU_NAMES: tuple[str, ...] = tuple(AFFWILD2_TO_MAIN)
AFFWILD2_MAIN_INDICES: tuple[int, ...] = tuple(AFFWILD2_TO_MAIN.values())
