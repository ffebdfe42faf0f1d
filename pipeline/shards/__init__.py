"""WebDataset shards: re-encode images, write reproducible tars, index them, count them."""
