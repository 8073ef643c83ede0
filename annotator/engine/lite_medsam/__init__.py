"""LiteMedSAM backend: TinyViT encoder + segment-anything decoder, bundled weights, exact reference preprocessing."""
