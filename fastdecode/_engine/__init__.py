"""The decoding engine: block planners, workspaces and compiled kernels.

Private. Its functions trust their inputs (validated, C-contiguous, of one float dtype): the
public layer (:mod:`fastdecode.ops`, :mod:`fastdecode.network`, :mod:`fastdecode.decoding`)
checks and converts them first. Nothing here imports the public layer.
"""
