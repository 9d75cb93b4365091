"""Where the shipped classifiers were documented (model cards name ``diffcrit.guidance.classifiers``): they live in
``diffcrit.models.classifiers`` now, below the analysis that scores clones with them."""

from ..models.classifiers import (ARCH_KEYS, ARCHITECTURES, CONFIG_NAME, SUBFOLDER, WEIGHTS_NAME, SmallCNN,  # noqa: F401
                                  build_classifier, classifier_config, classifier_folder, load_classifier,
                                  save_classifier)
