"""Training of the lip-sync model: data synthesis with phoneme timings, augmentation, the network, ONNX export.

Needs the ``train`` extra (torch). Entry point: ``python -m avaluma.renderer.lipsync.training``. Nothing here is
imported at run time except :mod:`.mfcc_template` (the benchmark's classic baseline, pure numpy).
"""
