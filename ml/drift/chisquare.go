package drift

import "math"

// chiSquareSF is P(X ≥ x) for X chi-square with k degrees of freedom: the
// regularized upper incomplete gamma function Q(k/2, x/2).
func chiSquareSF(x float64, k int) float64 {
	return upperGammaQ(float64(k)/2, x/2)
}

// chiSquareISF is the x with chiSquareSF(x, k) = q, 0 < q < 1, found by
// bisection to a relative 1e-13. It takes the upper tail rather than the
// CDF so that a small q loses no digits to 1-q.
func chiSquareISF(q float64, k int) float64 {
	lo, hi := 0.0, max(float64(k), 1)
	for chiSquareSF(hi, k) > q {
		lo, hi = hi, 2*hi
	}
	for hi-lo > 1e-13*hi {
		mid := (lo + hi) / 2
		if chiSquareSF(mid, k) > q {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// upperGammaQ is the regularized upper incomplete gamma function
// Γ(a, x)/Γ(a), a > 0: below x = a+1 as 1 - P(a, x) by P's power series,
// above by Legendre's continued fraction for Q in Lentz's form (Numerical
// Recipes §6.2; Cephes igamc chooses the same way). Both run until a term
// changes the result by less than the float64 epsilon.
func upperGammaQ(a, x float64) float64 {
	if x <= 0 {
		return 1
	}
	lg, _ := math.Lgamma(a)
	// x^a·e^-x/Γ(a), the factor both expansions share.
	front := math.Exp(a*math.Log(x) - x - lg)
	const eps = 0x1p-53
	const maxIter = 100000
	if x < a+1 {
		term := 1 / a
		sum := term
		for n := 1; n < maxIter; n++ {
			term *= x / (a + float64(n))
			sum += term
			if term < sum*eps {
				break
			}
		}
		return 1 - sum*front
	}
	const tiny = 1e-300
	b := x + 1 - a
	c := 1 / tiny
	d := 1 / b
	h := d
	for i := 1; i < maxIter; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < eps {
			break
		}
	}
	return front * h
}
