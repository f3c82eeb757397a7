"""Redis backends (the ``redis`` extra): the public face is :mod:`audian_fax_async.redis`."""
