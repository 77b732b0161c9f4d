"""Synthetic musculoskeletal ultrasound phantoms with exact ground truth, and the DICOM studies made from them.

The images imitate what a linear-array scanner exports: an 800 x 600 frame with a
black background, a rectangular B-mode tissue region, burned-in text, depth ticks,
a focus marker and a gray-scale bar outside the tissue region, and a Sequence of
Ultrasound Regions describing the calibration.

B-mode formation (speckle, point spread function, log compression) is described
in :mod:`.bmode`. Because the bright epineurial rim of a nerve is blurred and
log-compressed like everything else, its half-maximum inner edge lies inside the
true border and its ridge outside it (CONTRACT.md section 4); the ground truth
always refers to the geometry, never to the blurred appearance.

Coordinates
-----------
Pixel coordinates are ``[x, y]`` = ``[column, row]`` with pixel centres at integer
values (numpy / OpenCV convention; add 0.5 for DICOM SCOORD).  Scene functions
return images of the tissue region only, with truth in tissue-region pixel
coordinates; :func:`truth_to_frame` shifts them into frame coordinates.

Run ``.venv/bin/python sample_data/generate.py [--out DIR]`` to (re)create the
bundled sample data; the output is byte-identical on every run.

Modules: :mod:`.scenes` (scene descriptions), :mod:`.bmode` (grid, texture,
speckle and B-mode formation), :mod:`.nerve` and :mod:`.muscle` (the
phantoms), :mod:`.echogenicity` (ground-truth gray statistics), :mod:`.frame`
(scanner frame and burned-in text), :mod:`.doppler` and
:mod:`.doppler_nerve` (colour flow), :mod:`.dicom` (DICOM writing) and
:mod:`.sample_set` (the bundled files and their manifest).
"""
