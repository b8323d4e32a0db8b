"""Pictures the console draws itself, as inline SVG: a recording's waveform and the statistics' bar charts.

Pure functions but :func:`waveform_peaks`, which reads the audio file; no
script and no external reference in what they return (the pages' CSP allows neither).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf

#: The waveform's resolution: one bar per slice of the recording.
WAVEFORM_POINTS = 600


def waveform_peaks(path: Path, points: int = WAVEFORM_POINTS) -> list[float]:
    """The peak level (0..1) of each of ``points`` equal slices of an audio file.

    :raises soundfile.LibsndfileError: the file is not audio soundfile can read.
    """
    peaks = np.zeros(points, dtype=np.float64)
    with sf.SoundFile(str(path)) as audio:
        frames = audio.frames
        if frames <= 0:
            return [0.0] * points
        per_point = max(math.ceil(frames / points), 1)
        index = 0
        for block in audio.blocks(blocksize=per_point * 64, dtype="float32", always_2d=True):
            level = np.abs(block).max(axis=1)
            usable = len(level) - len(level) % per_point
            chunks = [level[:usable].reshape(-1, per_point).max(axis=1)]
            if usable < len(level):
                chunks.append(np.array([level[usable:].max()]))
            for value in np.concatenate(chunks):
                if index < points:
                    peaks[index] = value
                index += 1
    return [float(v) for v in np.clip(peaks, 0.0, 1.0)]


def waveform_svg(peaks: list[float]) -> str:
    """A symmetric bar waveform as SVG (no script, no external reference)."""
    width, height = len(peaks), 100
    bars = "".join(
        f'<rect x="{n}" y="{50 - peak * 48:.1f}" width="1" height="{max(peak * 96, 0.5):.1f}"/>'
        for n, peak in enumerate(peaks)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="none"><g fill="#3b6ea8">{bars}</g></svg>'
    )


def bar_chart_svg(labels: list[str], values: list[float], *, target: float | None = None) -> str:
    """A plain bar chart as inline SVG (labels under the bars, an optional target line)."""
    width, height, bottom = max(len(values), 1) * 40, 160, 20
    top = max([*values, target or 0.0, 1.0])
    parts = []
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        bar = (height - bottom - 10) * value / top
        x = n * 40 + 6
        parts.append(
            f'<rect class="bar" x="{x}" y="{height - bottom - bar:.1f}" width="28" height="{bar:.1f}">'
            f"<title>{_xml(label)}: {value:g}</title></rect>"
            f'<text x="{x + 14}" y="{height - 5}" text-anchor="middle">{_xml(label)}</text>'
        )
    if target:
        y = height - bottom - (height - bottom - 10) * target / top
        parts.append(f'<line class="target" x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}"/>')
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(parts)}</svg>'
    )


def grouped_bar_chart_svg(labels: list[str], values: list[list[float]], *, series: list[str]) -> str:
    """Bars side by side per label, one colour per series (``values[i]``, named ``series[i]``), as inline SVG.

    Each bar's class is ``bar s<i>``; a legend of the series names is drawn above the bars.
    """
    group = max(len(values), 1) * 12 + 10
    width, height, bottom, top_margin = max(len(labels), 1) * group + 10, 180, 20, 24
    top = max([v for row in values for v in row] + [1.0])
    parts = []
    for i, name in enumerate(series):
        parts.append(
            f'<rect class="bar s{i}" x="{6 + i * 90}" y="4" width="10" height="10"/>'
            f'<text x="{20 + i * 90}" y="13">{_xml(name)}</text>'
        )
    for n, label in enumerate(labels):
        x0 = n * group + 10
        for i, row in enumerate(values):
            bar = (height - bottom - top_margin) * row[n] / top
            parts.append(
                f'<rect class="bar s{i}" x="{x0 + i * 12}" y="{height - bottom - bar:.1f}" width="10" '
                f'height="{bar:.1f}"><title>{_xml(label)} · {_xml(series[i])}: {row[n]:g}</title></rect>'
            )
        parts.append(
            f'<text x="{x0 + len(values) * 6}" y="{height - 5}" text-anchor="middle">{_xml(label)}</text>'
        )
    return (
        f'<svg class="chart grouped" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(parts)}</svg>'
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
