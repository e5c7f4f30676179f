"""The 2021 study reproduction on top of the library (install with `pip install "xai_jax[study]"`).

- `xai_jax.study.data`: MNIST-1D and the histology (HMT) data sets, augmentations;
- `xai_jax.study.models`: the study's flax linen models (MNIST-1D CNN, VGG-7, a 1-D ViT) and
  the Keras .h5 importer;
- `xai_jax.study.train`: `fit` / `evaluate` with a pure jitted train step;
- `xai_jax.study.suite`: the method suite (`SuiteEntry`, `method_suite`, `explain_all`,
  `measure_all`, `sanity_all`);
- `xai_jax.study.report`: tables, findings and JSON written by the experiment scripts;
- `xai_jax.study.cli`: checked argparse types for those scripts.

The library (everything in xai_jax outside this package) never imports it.
"""
