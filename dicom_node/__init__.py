"""mskus DICOM storage node (C-ECHO / C-STORE SCP, job queue, sending results back).

It calls :mod:`pipeline`; :mod:`pipeline` never imports it.
"""
