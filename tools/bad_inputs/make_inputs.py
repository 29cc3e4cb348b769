"""Inputs for tools/bad_inputs/cases.sh (issue 11): frames, masks and broken files in the current folder."""

import os

import cv2
import numpy as np
from PIL import Image

os.makedirs("frames", exist_ok=True)
rng = np.random.default_rng(0)
for i in range(5):
    f = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    cv2.imwrite(f"frames/{i:05d}.jpg", f)
m = np.zeros((64, 96), np.uint8)
m[10:30, 10:30] = 1
m[35:60, 50:90] = 2
im = Image.fromarray(m, "P")
im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
im.save("mask.png")
m3 = m.copy()
m3[0:8, 0:8] = 3
m3[0:8, 80:90] = 4
Image.fromarray(m3, "L").save("mask4.png")
Image.fromarray(np.zeros((64, 96), np.uint8), "L").save("empty.png")
Image.fromarray(m[:32, :48], "L").save("small.png")
Image.fromarray(m.astype(np.uint16) * 1000).save("mask16.png")
rgb = np.zeros((64, 96, 3), np.uint8)
rgb[m == 1] = (255, 0, 0)
rgb[m == 2] = (0, 255, 0)
Image.fromarray(rgb, "RGB").save("maskrgb.png")
gap = np.where(m == 2, 200, np.where(m == 1, 5, 0)).astype(np.uint8)
Image.fromarray(gap, "L").save("gap.png")
os.makedirs("mixed", exist_ok=True)
for i in range(3):
    s = (64, 96) if i != 1 else (70, 100)
    cv2.imwrite(f"mixed/{i:05d}.jpg", (rng.random((*s, 3)) * 255).astype(np.uint8))
os.makedirs("withtxt", exist_ok=True)
for i in range(3):
    cv2.imwrite(f"withtxt/{i:05d}.jpg", (rng.random((64, 96, 3)) * 255).astype(np.uint8))
open("withtxt/notes.txt", "w").write("hello")
os.makedirs("gray", exist_ok=True)
for i in range(3):
    cv2.imwrite(f"gray/{i:05d}.jpg", (rng.random((64, 96)) * 255).astype(np.uint8))
os.makedirs("rgba", exist_ok=True)
for i in range(3):
    Image.fromarray((rng.random((64, 96, 4)) * 255).astype(np.uint8), "RGBA").save(f"rgba/{i:05d}.png")
os.makedirs("empty_dir", exist_ok=True)
open("zero.mp4", "wb").close()
open("notackpt.pth", "w").write("not a checkpoint")
