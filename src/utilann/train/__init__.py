"""Dense retriever training: bi-encoder, the paper's losses, batch construction, the loop.

Modules: :mod:`.settings` (run settings, torch-free), :mod:`.spec` (config -> run specs),
:mod:`.backbones` (backbone names -> local HF dirs), :mod:`.data` (training sets from pools and
labels), :mod:`.sampling` (groups and batches), :mod:`.losses`, :mod:`.model`, :mod:`.trainer`.
"""
