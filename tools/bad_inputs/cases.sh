#!/usr/bin/env bash
# Setup: mkdir -p $WORK && cd $WORK && python tools/bad_inputs/make_inputs.py && simvos-export --variant T --height 64 \
#   --width 96 --max-objects 2 --precision fp32 --no-engines --out t; then bash cases.sh and python api_cases.py there.
# New bad inputs (issue 11 closing note): each prints exit code and the last line of stderr.
B=${BIN:-$(dirname "$(command -v simvos-segment)")}  # the folder of the simvos-* commands
WORK=${WORK:-/tmp/bi}; cd "$WORK"
n=0
t() { local name="$1"; shift; n=$((n+1)); rm -rf $WORK/o; local err; err=$("$@" 2>&1 >$WORK/stdout.txt); local rc=$?; printf '%2d | %s | exit %s | %s\n' "$n" "$name" "$rc" "$(echo "$err" | grep -v '^\s*$' | tail -1 | cut -c1-230)"; }
S="$B/simvos-segment --engine-dir t --no-progress"
t "segment: 4 objects, export max 2 (chunks)" $S --input frames --mask mask4.png --out o
t "segment: mask smaller than frames" $S --input frames --mask small.png --out o
t "segment: mask with no object" $S --input frames --mask empty.png --out o
t "segment: 16-bit PNG mask" $S --input frames --mask mask16.png --out o
t "segment: RGB colour PNG mask" $S --input frames --mask maskrgb.png --out o
t "segment: ids with gaps (5, 200)" $S --input frames --mask gap.png --out o
t "segment: empty frames folder" $S --input empty_dir --mask mask.png --out o
t "segment: frames of two sizes" $S --input mixed --mask mask.png --out o
t "segment: a .txt among frames" $S --input withtxt --mask mask.png --out o
t "segment: grayscale JPEG frames" $S --input gray --mask mask.png --out o
t "segment: RGBA PNG frames" $S --input rgba --mask mask.png --out o
t "segment: 0-byte .mp4" $S --input zero.mp4 --mask mask.png --out o
touch $WORK/afile
t "segment: --out is a file" $S --input frames --mask mask.png --out afile
t "segment: --mask is a folder" $S --input frames --mask frames --out o
t "segment: --threads 0" $S --input frames --mask mask.png --out o --threads 0
t "segment: --overlay onto a frame" $S --input frames --mask mask.png --out o --overlay frames/00000.jpg
t "segment: --overlay .txt name" $S --input frames --mask mask.png --out o --overlay o2/x.txt
t "segment: --backend tensorrt, no engines" $S --input frames --mask mask.png --out o --backend tensorrt
t "segment: --server without port" $B/simvos-segment --server localhost --input frames --mask mask.png --out o --no-progress
t "segment: --server port not a number" $B/simvos-segment --server localhost:abc --input frames --mask mask.png --out o --no-progress
rm -rf t2 && cp -r t t2 && rm t2/aggregate.onnx
t "segment: export with a graph deleted" $B/simvos-segment --engine-dir t2 --input frames --mask mask.png --out o --no-progress
rm -rf t3 && cp -r t t3 && echo '{"format": ' > t3/manifest.json
t "build: manifest.json is not JSON" $B/simvos-build t3
t "build: --compute-capability 7.5" $B/simvos-build t --compute-capability 7.5
t "build: --workspace -1" $B/simvos-build t --workspace -1
E="$B/simvos-export --variant T --no-engines --out o"
t "export: --height 20 (not /16)" $E --height 20
t "export: --max-objects 0" $E --max-objects 0
t "export: --max-objects 300" $E --max-objects 300
t "export: --kf 0" $E --kf 0
t "export: --layer-index 99 (tiny has 12 blocks)" $E --layer-index 99
t "export: token refinement with L=0" $E --layer-index 0 --token-refinement
t "export: --checkpoint a text file" $E --checkpoint notackpt.pth
t "export: --checkpoint and --mae" $E --checkpoint notackpt.pth --mae notackpt.pth
echo '{"variant": "T", "heigth": 64}' > typo.json
t "export: recipe with a misspelt key" $E --recipe typo.json
t "export: --out under a file" $B/simvos-export --variant T --no-engines --out afile/x
t "eval: DAVIS root without JPEGImages" $B/simvos-eval --davis-root empty_dir --engine-dir t --out o
t "bench: --layers 99" $B/simvos-bench --backend onnxruntime --layers 99 --results o
t "bench: --backbone large --layers 20, TensorRT absent" $B/simvos-bench --backend tensorrt --backbone large --layers 20 --results o
t "bench: --size 100x100" $B/simvos-bench --backend onnxruntime --size 100x100 --results o
rm -rf frames_m && cp -r frames frames_m && cp mask.png frames_m/zz_mask.png
t "segment: the mask inside the frames folder (skipped as a frame)" $S --input frames_m --mask frames_m/zz_mask.png --out o
echo "cases: $n"
