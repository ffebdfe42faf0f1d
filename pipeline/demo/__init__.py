"""The built-in synthetic demo corpus: skin-like images and captions with planted problems.

It exists so ``dvc repro`` runs end to end on a fresh clone with no downloads, and so the tests
know exactly what the later stages must find (``truth.json``): duplicate copies, multi-caption
images and bad inputs. Every image is generated; none is a real patient photograph.
"""
