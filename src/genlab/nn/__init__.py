"""Reusable networks: embeddings, the U-Net, the classifier CNN, transformers."""
