"""Sample-quality metrics: FID, KID, precision/recall on a feature network's features.

fid.py: the maths on feature arrays; features.py: which network, and the
cache of real-data features; evaluate.py: samples -> metrics beside their
train-vs-test floor; inception.py: the optional standard Inception-v3.
"""

from .evaluate import evaluate_model, evaluate_samples, format_metrics, sample_model  # noqa: F401
from .features import (FeatureExtractor, feature_extractor, find_classifier, genlab_home,  # noqa: F401
                       network_hash, real_features)
from .fid import (feature_stats, fid_from_features, frechet_distance, kid, mmd2_unbiased,  # noqa: F401
                  precision_recall)
