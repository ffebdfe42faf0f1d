"""Train DermLIP (CLIP on dermatology) on the WebDataset shards and evaluate it.

One job per module: ``configs`` registers the bundled model configs with open_clip, ``shardset``
turns a split folder into the brace pattern open_clip_train reads, ``train`` builds the trainer's
argv and runs it (in-process, or under torchrun via ``launch``), ``panderm`` joins a PanDerm
image trunk and a local text encoder into the starting checkpoint of that profile, and
``pretrained`` resolves a profile's or model spec's starting weights offline (open_clip tag,
``hf-hub:`` id or file), ``models`` parses ``derm1m evaluate --model`` specs, and
``encode``/``retrieval``/``zeroshot``/``probe``/``suite``/``evaluate`` score any model on the
holdout shards and Derm1M's benchmark suite (zero-shot, linear probe at label ratios, concept
AUROC, retrieval); ``benchmark_csv`` builds the benchmark CSVs from the datasets' published
layouts and ``compare`` lays out the side-by-side table.
"""
