"""Turning a driving video's Sapiens outputs and a reference image into job inputs.

- ``skeleton`` / ``pose_render``: COCO-WholeBody keypoints -> OpenPose-style pose frames
- ``sapiens``: reading ``pose.pkl``, ``normal.npy`` and ``seg.npy`` safely and checking them
- ``hand_render``: surface normals kept on the hands only
- ``prepare``: `posegen prepare` (pose.mp4, hand.mp4 and their overlay previews)
- ``validate``: `posegen check` (inputs against each other and the chunk settings)
- ``describe`` / ``prompt_check``: `posegen prompt` (Qwen2.5-VL description + keyword rule)

See docs/inputs.md.
"""
