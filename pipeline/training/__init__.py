"""Train DermLIP (CLIP on dermatology) on the WebDataset shards and evaluate it.

One job per module: ``configs`` registers the bundled model configs with open_clip, ``shardset``
turns a split folder into the brace pattern open_clip_train reads, ``train`` builds the trainer's
argv and runs it (in-process, or under torchrun via ``launch``), ``panderm`` joins a PanDerm
image trunk and a local text encoder into the starting checkpoint of that profile, and
``encode``/``retrieval``/``zeroshot``/``probe``/``evaluate`` score a checkpoint on the holdout
shards and benchmark CSVs (``benchmark_csv`` builds a HAM10000 one).
"""
