"""interactive: the pre-mask model inside the annotation tools, where annotators accept, adjust or re-prompt.

* ``session.py``      - one model (SAM 2, or classical without a checkpoint) behind a lock, with each
  image's embedding cached, answering clicks and boxes; the detector's classed masks for new tasks;
* ``images.py``       - reading images the way Label Studio hands them to a backend;
* ``label_studio.py`` - Label Studio's ML backend protocol (``dataset-pipeline ml-backend``);
* ``cvat.py``         - the same model as a CVAT auto-annotation function (cvat-sdk).
"""
