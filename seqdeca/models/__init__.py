"""Networks: coarse encoder, AU network, temporal fusion, AU head, detail stage, weight import."""
