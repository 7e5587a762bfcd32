"""The hot paths of slice marshalling, each a pure-Python module that setup.py also compiles
with Cython into a twin named with a leading underscore (``kvin_codec`` and ``_kvin_codec``).
The public modules (``dcp_worker.kvin``) choose the compiled twin when it is there, unless the
environment variable ``DCP_WORKER_NO_EXTENSIONS`` is set to anything but an empty string."""
