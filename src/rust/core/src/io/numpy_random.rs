//! numpy's legacy `RandomState` (MT19937 seeded from an integer) and its `shuffle` of a 1-D
//! array, bit for bit: Keras shuffles the imdb, reuters and boston_housing data with
//! `RandomState(seed).shuffle(indices)`, so the same seed gives the same order here.
pub struct RandomState {
    state: [u32; 624],
    pos: usize,
}

impl RandomState {
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Self { state, pos: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.pos = 0;
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_interval`: uniform in 0..=max by masked rejection.
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        if max <= 0xffff_ffff {
            loop {
                let v = self.next_u32() as u64 & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            let v = ((self.next_u32() as u64) << 32 | self.next_u32() as u64) & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `indices = np.arange(n); rng.shuffle(indices)`: the shuffled 0-based indices.
    pub fn shuffled_indices(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            v.swap(i, j);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_as_numpy_does() {
        // numpy: r = np.random.RandomState(113); r.shuffle(np.arange(20)); then np.arange(7).
        let mut r = RandomState::new(113);
        assert_eq!(r.shuffled_indices(20), vec![14, 11, 19, 17, 1, 4, 8, 3, 13, 15, 16, 9, 0, 7, 6, 18, 12, 10, 2, 5]);
        assert_eq!(r.shuffled_indices(7), vec![2, 1, 0, 4, 6, 3, 5]);
        assert_eq!(RandomState::new(0).shuffled_indices(5), vec![2, 0, 1, 3, 4]);
    }
}
