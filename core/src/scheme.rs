//! Bit widths, code ranges, and the input quantizer.

/// Largest code of a signed symmetric (narrow-range) quantizer: `2^(bits-1) - 1`.
/// Weights use codes in `[-qmax, qmax]` (3 bits: `[-3, 3]`), scale per output channel.
pub fn signed_qmax(bits: u32) -> i32 {
    (1i32 << (bits - 1)) - 1
}

/// Largest code of an unsigned quantizer: `2^bits - 1`. Activations after ReLU and inputs use
/// codes in `[0, qmax]` with zero point 0.
pub fn unsigned_qmax(bits: u32) -> i32 {
    (1i32 << bits) - 1
}

/// Input quantizer for 8-bit pixels: the pixel `p / 255 ∈ [0, 1]` on a fixed scale `1 / qmax`,
/// i.e. `round(p * qmax / 255)` (ties up), computed in integers so the client, the trainer and
/// the simulator agree exactly. Returns a code in `[0, 2^bits - 1]`.
pub fn input_code(pixel: u8, bits: u32) -> i32 {
    let qmax = unsigned_qmax(bits);
    (pixel as i32 * qmax + 127) / 255
}

/// The input quantizer's scale: `1 / (2^bits - 1)` (pixels normalised to `[0, 1]`).
pub fn input_scale(bits: u32) -> f32 {
    1.0 / unsigned_qmax(bits) as f32
}

/// Quantize a batch of images (`[n, pixels]` bytes) to input codes as `f32`, row-major.
pub fn input_codes_f32(pixels: &[u8], bits: u32) -> Vec<f32> {
    pixels.iter().map(|&p| input_code(p, bits) as f32).collect()
}

/// Round half to even, as Burn's `round` (burn-flex `round_ties_even`).
pub fn round_ties_even(x: f32) -> f32 {
    x.round_ties_even()
}

/// The activation quantizer on a dequantized pre-activation `z`: `clamp(round(z / s), 0, qmax)`
/// (ReLU folded into the lower clamp). `f32` arithmetic in this exact order, as in the QAT forward.
pub fn quantize_activation(z: f32, scale: f32, qmax: i32) -> i32 {
    round_ties_even(z / scale).clamp(0.0, qmax as f32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ranges() {
        assert_eq!(signed_qmax(3), 3);
        assert_eq!(signed_qmax(4), 7);
        assert_eq!(unsigned_qmax(3), 7);
        assert_eq!(unsigned_qmax(4), 15);
    }

    #[test]
    fn input_codes_cover_the_range_and_round_to_nearest() {
        assert_eq!(input_code(0, 3), 0);
        assert_eq!(input_code(255, 3), 7);
        // 255/7 = 36.43 pixel levels per code: 18 -> 0.49 rounds down, 19 -> 0.52 rounds up.
        assert_eq!(input_code(18, 3), 0);
        assert_eq!(input_code(19, 3), 1);
        for p in 0..=255u8 {
            let exact = p as f64 * 7.0 / 255.0;
            assert!((input_code(p, 3) as f64 - exact).abs() <= 0.5 + 1e-9);
        }
    }

    #[test]
    fn activation_quantizer_clamps_and_rounds_half_even() {
        assert_eq!(quantize_activation(-3.0, 0.5, 7), 0);
        assert_eq!(quantize_activation(100.0, 0.5, 7), 7);
        assert_eq!(quantize_activation(1.25, 0.5, 7), 2); // 2.5 -> 2 (ties to even)
        assert_eq!(quantize_activation(1.75, 0.5, 7), 4); // 3.5 -> 4
    }
}
