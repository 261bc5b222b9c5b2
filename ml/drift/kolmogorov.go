package drift

import "math"

// kolmogorovSF is P(D_n ≥ x) for the two-sided one-sample Kolmogorov-
// Smirnov statistic D_n = sup|F_n - F|, scipy.stats.kstwo.sf(x, n). It
// follows scipy's _kolmogn, which picks a method by n and n·x² as Simard
// and L'Ecuyer (2011, J. Stat. Softw. 39(11)) advise:
//   - Ruben-Gambino's closed forms for n·x ≤ 1 and n·x ≥ n-1;
//   - twice the one-sided Smirnov tail when the two one-sided events cannot
//     (x ≥ 0.5) or almost never (n·x² large) happen together;
//   - Durbin's matrix (Marsaglia, Tsang, Wang 2003) for small n·x;
//   - the Pelz-Good asymptotic series otherwise.
//
// Where scipy uses Pomeranz's recursion (n ≤ 140, 0.754693 < n·x² ≤ 4) this
// uses Durbin's matrix: both are exact, and the matrix is at most 47×47
// there.
func kolmogorovSF(n int, x float64) float64 {
	if x >= 1 {
		return 0
	}
	if x <= 0 {
		return 1
	}
	nf := float64(n)
	t := nf * x
	if t <= 1 {
		if t <= 0.5 {
			return 1
		}
		// P(D_n ≤ x) = n!/n^n · (2t-1)^n
		var cdf float64
		if n <= 140 {
			cdf = 1
			for i := 1; i <= n; i++ {
				cdf *= float64(i) * (1 / nf) * (2*t - 1)
			}
		} else {
			lg, _ := math.Lgamma(nf + 1)
			cdf = math.Exp(lg - nf*math.Log(nf) + nf*math.Log(2*t-1))
		}
		return clip01(1 - cdf)
	}
	if t >= nf-1 {
		return clip01(2 * math.Pow(1-x, nf))
	}
	if x >= 0.5 {
		return clip01(2 * smirnovSF(n, x))
	}
	nx2 := t * x
	if n <= 140 {
		if nx2 <= 4 {
			return clip01(1 - durbinCDF(n, x))
		}
		return clip01(2 * smirnovSF(n, x))
	}
	if nx2 >= 370 {
		return 0
	}
	if nx2 >= 2.2 {
		return clip01(2 * smirnovSF(n, x))
	}
	if n <= 100000 && nf*math.Pow(x, 1.5) <= 1.4 {
		return clip01(1 - durbinCDF(n, x))
	}
	return clip01(1 - pelzGoodCDF(n, x))
}

// Scaling of Durbin's matrix powers, which over- and underflow.
const (
	durbinScaleExp = 128
	durbinBig      = 0x1p128
	durbinSmall    = 0x1p-128
)

// durbinCDF is P(D_n ≤ d) by Durbin's matrix: with k = ⌈n·d⌉ and h = k-n·d,
// n!/n^n times entry (k,k) of H^n, H a (2k-1)×(2k-1) matrix of inverse
// factorials. H^n is taken by squaring, with a separate binary exponent:
// O(k³·log n), where the callers keep k below about 60.
func durbinCDF(n int, d float64) float64 {
	nd := float64(n) * d
	if nd <= 0.5 {
		return 0
	}
	k := int(math.Ceil(nd))
	h := float64(k) - nd
	m := 2*k - 1

	// v[j] = (1 - h^(j+1))/(j+1)!, but for the last; w[j] = 1/j!.
	v := make([]float64, m)
	w := make([]float64, m)
	fac := 1.0
	for j := 1; j <= m; j++ {
		w[j-1] = fac
		fac /= float64(j)
		v[j-1] = (1 - math.Pow(h, float64(j))) * fac
	}
	v[m-1] = (1 + (math.Pow(max(2*h-1, 0), float64(m)) - 2*math.Pow(h, float64(m)))) * fac

	H := newMatrix(m)
	for r := range m {
		for c := 1; c <= r+1 && c < m; c++ {
			H.set(r, c, w[r-c+1])
		}
		H.set(r, 0, v[r])
	}
	for c := range m {
		H.set(m-1, c, v[m-1-c])
	}

	pow := identity(m)
	powExp, hExp := 0, 0
	for e := n; e > 0; e /= 2 {
		if e%2 == 1 {
			pow = pow.mul(H)
			powExp += hExp
		}
		if e > 1 {
			H = H.mul(H)
			hExp *= 2
			if math.Abs(H.at(k-1, k-1)) > durbinBig {
				H.scale(durbinSmall)
				hExp += durbinScaleExp
			}
		}
	}
	p := pow.at(k-1, k-1)
	for i := 1; i <= n; i++ {
		p = float64(i) * p / float64(n)
		if math.Abs(p) < durbinSmall {
			p *= durbinBig
			powExp -= durbinScaleExp
		}
	}
	return clip01(math.Ldexp(p, powExp))
}

// matrix is a square matrix in row-major order.
type matrix struct {
	n int
	a []float64
}

func newMatrix(n int) matrix { return matrix{n, make([]float64, n*n)} }

func identity(n int) matrix {
	m := newMatrix(n)
	for i := range n {
		m.set(i, i, 1)
	}
	return m
}

func (m matrix) at(r, c int) float64     { return m.a[r*m.n+c] }
func (m matrix) set(r, c int, v float64) { m.a[r*m.n+c] = v }

func (m matrix) scale(f float64) {
	for i := range m.a {
		m.a[i] *= f
	}
}

func (m matrix) mul(b matrix) matrix {
	out := newMatrix(m.n)
	for r := range m.n {
		row := out.a[r*m.n : (r+1)*m.n]
		for k := range m.n {
			f := m.at(r, k)
			if f == 0 {
				continue
			}
			for c, bv := range b.a[k*m.n : (k+1)*m.n] {
				row[c] += f * bv
			}
		}
	}
	return out
}

// pelzGoodCDF is the Pelz-Good (1976) approximation of P(D_n ≤ x): the
// Li-Chien/Korolyuk expansion K0 + K1/√n + K2/n + K3/n^1.5 in z = x√n,
// each term rewritten through Jacobi theta functions so that it converges
// fast for small z.
func pelzGoodCDF(n int, x float64) float64 {
	const (
		pi2 = math.Pi * math.Pi
		pi4 = pi2 * pi2
		pi6 = pi4 * pi2
	)
	z := math.Sqrt(float64(n)) * x
	z2, z3, z4 := z*z, z*z*z, z*z*z*z
	z6 := z4 * z2
	qlog := -pi2 / 8 / z2
	if qlog < -708 {
		return 0
	}
	q := math.Exp(qlog)

	k1a, k1b := -z2, pi2/4
	k2a := 6*z6 + 2*z4
	k2b := (2*z4 - 5*z2) * pi2 / 4
	k2c := pi4 * (1 - 2*z2) / 16
	k3d := pi6 * (5 - 30*z2) / 64
	k3c := pi4 * (-60*z2 + 212*z4) / 16
	k3b := pi2 * (135*z4 - 96*z6) / 4
	k3a := -30*z6 - 90*z4*z4

	// Σ c(m)·q^(m²) over odd m = 2k-1, by Horner's rule in q^(8k).
	var K [4]float64
	maxk := int(math.Ceil(16 * z / math.Pi))
	for k := maxk; k >= 1; k-- {
		m := float64(2*k - 1)
		m2 := m * m
		m4, m6 := m2*m2, m2*m2*m2
		qp := math.Pow(q, float64(8*k))
		coeffs := [4]float64{
			1,
			k1a + k1b*m2,
			k2a + k2b*m2 + k2c*m4,
			k3a + k3b*m2 + k3c*m4 + k3d*m6,
		}
		for i := range K {
			K[i] = K[i]*qp + coeffs[i]
		}
	}
	sqrt2pi := math.Sqrt(2 * math.Pi)
	den := [4]float64{z, 6 * z4, 72 * z6 * z, 6480 * z6 * z4}
	for i := range K {
		K[i] = K[i] * q * sqrt2pi / den[i]
	}

	// The terms of K2 and K3 over all integers k, in q^(k²).
	q = math.Exp(-pi2 / 2 / z2)
	var k2extra, k3extra float64
	sqrt3z := math.Sqrt(3) * z
	for k := maxk; k >= 1; k-- {
		kf := float64(k)
		qk := math.Pow(q, kf*kf)
		k2extra += kf * kf * qk
		k3extra += (sqrt3z + math.Pi*kf) * (sqrt3z - math.Pi*kf) * kf * kf * qk
	}
	K[2] += k2extra * pi2 * sqrt2pi / (-36 * z3)
	K[3] += k3extra * pi2 * sqrt2pi / (216 * z6)

	sum := 0.0
	for i := range K {
		sum += K[i] / math.Pow(float64(n), float64(i)/2)
	}
	return sum
}

// smirnovSF is P(D+_n ≥ x) for the one-sided statistic D+_n = sup(F_n - F),
// scipy.special.smirnov, by the Smirnov/Birnbaum-Tingey sum
//
//	x · Σ_{v=0}^{⌊n(1-x)⌋} C(n,v) (x+v/n)^(v-1) (1-x-v/n)^(n-v),
//
// its terms taken in logarithms. Beyond a million values it uses scipy's
// approximation exp(-(6nx+1)²/(18n)). The terms peak near v = n/2, so all
// are summed: O(n) transcendental functions.
func smirnovSF(n int, x float64) float64 {
	nf := float64(n)
	if -2*nf*x*x < minLog {
		return 0
	}
	if n > 1000000 {
		logp := -math.Pow(6*nf*x+1, 2) / 18 / nf
		if logp < -math.Ln2 {
			return math.Exp(logp)
		}
		return 1 + math.Expm1(logp)
	}
	// Terms with 1-x-v/n ≤ 0 are 0 (or not in the sum).
	last := n - int(math.Floor(nf*x)) - 1
	sum := 0.0
	logC := 0.0 // log C(n, v)
	for v := 0; v <= last; v++ {
		a := x + float64(v)/nf
		b := float64(n-v)/nf - x
		if b > 0 {
			sum += math.Exp(logC + float64(v-1)*math.Log(a) + float64(n-v)*math.Log(b))
		}
		logC += math.Log(float64(n-v) / float64(v+1))
	}
	return x * sum
}

// minLog is Cephes' MINLOG, log(2^-1022): exp below it underflows.
const minLog = -708.3964185322641

func clip01(p float64) float64 {
	return min(max(p, 0), 1)
}
