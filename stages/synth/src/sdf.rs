//! Signed distance functions (mm; negative inside) of the primitives the anatomy is built from.
//!
//! Exact where cheap (sphere, capsule, box, slabs), the usual first-order approximation for
//! ellipses and ellipsoids. Depth below a surface (`-sdf`) drives the cortical shell.

use glam::{DVec2, DVec3};

/// Sphere of radius `r` at the origin.
pub fn sphere(p: DVec3, r: f64) -> f64 {
    p.length() - r
}

/// Ellipsoid with semi-axes `r` centred at the origin (approximate distance).
pub fn ellipsoid(p: DVec3, r: DVec3) -> f64 {
    let k0 = (p / r).length();
    let k1 = (p / (r * r)).length();
    if k1 < 1e-12 {
        -r.min_element()
    } else {
        k0 * (k0 - 1.0) / k1
    }
}

/// Ellipse with semi-axes `r` in 2D (approximate distance).
pub fn ellipse(p: DVec2, r: DVec2) -> f64 {
    let k0 = (p / r).length();
    let k1 = (p / (r * r)).length();
    if k1 < 1e-12 {
        -r.min_element()
    } else {
        k0 * (k0 - 1.0) / k1
    }
}

/// Extrudes a 2D distance `d2` (in the u-v plane) over `|w| <= half_height`.
pub fn extrude(d2: f64, w: f64, half_height: f64) -> f64 {
    let dw = w.abs() - half_height;
    d2.max(dw).min(0.0) + DVec2::new(d2.max(0.0), dw.max(0.0)).length()
}

/// Elliptic cylinder along w: semi-axes `r` in u-v, `|w| <= half_height`.
pub fn elliptic_cylinder(p: DVec3, r: DVec2, half_height: f64) -> f64 {
    extrude(ellipse(DVec2::new(p.x, p.y), r), p.z, half_height)
}

/// Capsule (segment `a`-`b` thickened by `r`).
pub fn capsule(p: DVec3, a: DVec3, b: DVec3, r: f64) -> f64 {
    let pa = p - a;
    let ba = b - a;
    let h = (pa.dot(ba) / ba.length_squared().max(1e-12)).clamp(0.0, 1.0);
    (pa - ba * h).length() - r
}

/// Axis-aligned box with half extents `b` centred at the origin.
pub fn cuboid(p: DVec3, b: DVec3) -> f64 {
    let q = p.abs() - b;
    q.max(DVec3::ZERO).length() + q.max_element().min(0.0)
}

/// Union.
pub fn union(a: f64, b: f64) -> f64 {
    a.min(b)
}

/// `a` minus `b`.
pub fn subtract(a: f64, b: f64) -> f64 {
    a.max(-b)
}

/// Smooth union with blend radius `k` mm (fillets where processes meet the body).
pub fn smooth_union(a: f64, b: f64, k: f64) -> f64 {
    let h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0);
    b + (a - b) * h - k * h * (1.0 - h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_primitives() {
        assert!((sphere(DVec3::new(3.0, 4.0, 0.0), 2.0) - 3.0).abs() < 1e-12);
        let d = capsule(
            DVec3::new(0.0, 2.0, 5.0),
            DVec3::ZERO,
            DVec3::new(0.0, 0.0, 10.0),
            1.0,
        );
        assert!((d - 1.0).abs() < 1e-12);
        assert!((cuboid(DVec3::new(3.0, 0.0, 0.0), DVec3::splat(1.0)) - 2.0).abs() < 1e-12);
        assert!((cuboid(DVec3::ZERO, DVec3::new(1.0, 2.0, 3.0)) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn ellipse_distance_is_exact_on_axes_and_signed() {
        let r = DVec2::new(8.0, 5.0);
        assert!((ellipse(DVec2::new(10.0, 0.0), r) - 2.0).abs() < 1e-9);
        assert!((ellipse(DVec2::new(0.0, 7.0), r) - 2.0).abs() < 1e-9);
        assert!(ellipse(DVec2::new(0.0, 0.0), r) < 0.0);
        assert!(ellipse(DVec2::new(7.9, 0.0), r) < 0.0);
        let c = elliptic_cylinder(DVec3::new(0.0, 0.0, 6.0), r, 4.0);
        assert!((c - 2.0).abs() < 1e-9);
    }

    #[test]
    fn set_operations() {
        assert_eq!(union(1.0, -2.0), -2.0);
        assert_eq!(subtract(-1.0, -0.5), 0.5);
        assert!(smooth_union(1.0, 1.0, 1.0) < 1.0);
    }
}
