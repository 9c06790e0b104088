"""What `streamlift export` does beyond parsing its flags."""

from __future__ import annotations

from streamlift.errors import UserError


def export_onnx_file(model, out) -> str:
    """Export the lifter as ONNX, checked against torch on the shipped sample; the report."""
    from streamlift.lifter.onnx import MAX_ERROR_MM, export_checked

    _, err = export_checked(model, out)
    return (f"wrote {out}: the lifter's per-window forward (window {model.cfg.window}, "
            f"{model.cfg.mode}); largest difference from torch on 256 sample windows "
            f"{err:.5f} mm (limit {MAX_ERROR_MM} mm)")


def run(c, model, device, progress: bool = True) -> str:
    """Every export an export.options.ExportConfig asks for; the report lines."""
    if c.onnx is None and c.bvh is None:
        raise UserError("nothing to export: name an .onnx and/or a .bvh file")
    lines = []
    if c.onnx is not None:
        lines.append(export_onnx_file(model, c.onnx))
    if c.bvh is not None:
        from streamlift.export.bvh_view import export_view
        lines.append(export_view(model, c, device, progress))
    return "\n".join(lines)
