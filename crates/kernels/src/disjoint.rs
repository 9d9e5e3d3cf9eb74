//! A buffer that several workers of one parallel call write at once, each to parts no other
//! worker touches (rows, tiles, (token, head) pairs).

use std::marker::PhantomData;

/// A mutable buffer shared by the workers of one parallel call.
#[derive(Clone, Copy)]
pub(crate) struct Disjoint<'a, T> {
    /// The first element.
    ptr: *mut T,
    /// Elements in the buffer.
    len: usize,
    /// Borrows the buffer mutably for as long as this lives.
    _buffer: PhantomData<&'a mut [T]>,
}

// SAFETY: a `Disjoint` is an exclusive borrow of a `[T]`; its parts are handed out only through
// `part`, whose callers guarantee that no two threads get overlapping parts.
unsafe impl<T: Send> Send for Disjoint<'_, T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    /// Borrows `buffer`.
    pub(crate) fn new(buffer: &'a mut [T]) -> Self {
        Self {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: PhantomData,
        }
    }

    /// The buffer's first element, for writers that address their (interleaved, never
    /// shared) elements themselves, such as a strided matrix product.
    ///
    /// # Safety
    /// Writes through the pointer must stay inside the buffer and never touch an element
    /// another thread reads or writes meanwhile.
    pub(crate) unsafe fn as_mut_ptr(&self) -> *mut T {
        self.ptr
    }

    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Elements `start..start + len`.
    ///
    /// # Safety
    /// No other thread may read or write these elements while the returned slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn part(&self, start: usize, len: usize) -> &'a mut [T] {
        assert!(start + len <= self.len, "part out of the buffer");
        // SAFETY: in bounds (asserted); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
