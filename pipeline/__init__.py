"""derm1m-pipeline: build a Derm1M-style dermatology image-caption corpus, reproducibly.

Floors (see README "Architecture"): ``tables``/``params`` at the bottom, ``sources``/``images``/
``text``/``shards``/``training`` as steps, ``stages`` compose steps into DVC stages, and ``cli``
is the one ``derm1m`` command on top.
"""

__version__ = "0.1.0"
