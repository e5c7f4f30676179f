"""Helpers shared by the scripts that compare xai_jax with peer libraries (Quantus, Captum,
pytorch-grad-cam). They need the optional peers venv (torch); nothing in xai_jax or its tests
depends on them."""
