# libqtl.so for the Python package (written by the Python work; placeholder).
