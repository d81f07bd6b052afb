//! Laying answers out in the caller's buffer: a bump allocator that aligns every object to what
//! its type needs (the buffer itself may start anywhere) and never writes past `buflen`. Running
//! out of room is [`Erange`], which the entry points turn into glibc's "grow the buffer" triple.

use std::ffi::c_char;
use std::mem::{align_of, size_of};
use std::ptr;

/// The caller's buffer is too small.
#[derive(Debug, PartialEq, Eq)]
pub struct Erange;

/// `struct gaih_addrtuple` of `<nss.h>` (x86_64: size 40, align 8).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GaihAddrTuple {
    pub next: *mut GaihAddrTuple,
    pub name: *mut c_char,
    pub family: libc::c_int,
    pub addr: [u32; 4],
    pub scopeid: u32,
}

/// A bump allocator over `buf[..len]`.
pub struct Bump {
    base: *mut u8,
    len: usize,
    used: usize,
}

impl Bump {
    /// # Safety
    /// `buf` must be valid for writes of `len` bytes for the life of the `Bump`, or `len` 0.
    pub unsafe fn new(buf: *mut c_char, len: usize) -> Bump {
        Bump {
            base: buf.cast(),
            len: if buf.is_null() { 0 } else { len },
            used: 0,
        }
    }

    /// Reserves `size` bytes aligned to `align` (a power of two).
    fn alloc(&mut self, size: usize, align: usize) -> Result<*mut u8, Erange> {
        let addr = (self.base as usize).checked_add(self.used).ok_or(Erange)?;
        let pad = addr.wrapping_neg() & (align - 1);
        let start = self.used.checked_add(pad).ok_or(Erange)?;
        let end = start.checked_add(size).ok_or(Erange)?;
        if end > self.len {
            return Err(Erange);
        }
        self.used = end;
        // SAFETY: start + size <= len, so the result stays inside the caller's buffer.
        Ok(unsafe { self.base.add(start) })
    }

    /// Copies `s` and a NUL.
    pub fn str(&mut self, s: &[u8]) -> Result<*mut c_char, Erange> {
        let p = self.alloc(s.len().checked_add(1).ok_or(Erange)?, 1)?;
        // SAFETY: p has room for s.len() + 1 bytes inside the buffer, and the buffer cannot
        // overlap `s` (s lives in the snapshot mapping or on our stack).
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            *p.add(s.len()) = 0;
        }
        Ok(p.cast())
    }

    /// Copies raw bytes with the given alignment.
    pub fn bytes(&mut self, s: &[u8], align: usize) -> Result<*mut u8, Erange> {
        let p = self.alloc(s.len(), align)?;
        // SAFETY: p has room for s.len() bytes; no overlap as above.
        unsafe { ptr::copy_nonoverlapping(s.as_ptr(), p, s.len()) };
        Ok(p)
    }

    /// An array of `n` NULL-initialised pointers, aligned for pointers.
    pub fn ptr_array(&mut self, n: usize) -> Result<*mut *mut c_char, Erange> {
        let size = n.checked_mul(size_of::<*mut c_char>()).ok_or(Erange)?;
        let p = self
            .alloc(size, align_of::<*mut c_char>())?
            .cast::<*mut c_char>();
        for i in 0..n {
            // SAFETY: i < n and p is aligned with room for n pointers.
            unsafe { p.add(i).write(ptr::null_mut()) };
        }
        Ok(p)
    }

    /// One zeroed, aligned address tuple.
    pub fn tuple(&mut self) -> Result<*mut GaihAddrTuple, Erange> {
        let p = self
            .alloc(size_of::<GaihAddrTuple>(), align_of::<GaihAddrTuple>())?
            .cast::<GaihAddrTuple>();
        // SAFETY: p is aligned with room for one tuple.
        unsafe { p.write(EMPTY_TUPLE) };
        Ok(p)
    }
}

/// A tuple with every field zero / NULL.
pub const EMPTY_TUPLE: GaihAddrTuple = GaihAddrTuple {
    next: ptr::null_mut(),
    name: ptr::null_mut(),
    family: 0,
    addr: [0; 4],
    scopeid: 0,
};

/// Receives one alias or address; fails when the buffer is full.
pub type Put<'p> = dyn FnMut(&[u8]) -> Result<(), Erange> + 'p;
/// Feeds every alias or address of an answer to a [`Put`].
pub type Feed<'f> = dyn for<'p> FnMut(&mut Put<'p>) -> Result<(), Erange> + 'f;

/// Fills `*result` with a hostent whose strings and arrays live in `bump`.
///
/// `addrs(f)` must call `f` with exactly `count` addresses of `len` bytes each, and `aliases(f)`
/// exactly `n_aliases` names.
///
/// # Safety
/// `result` must be valid for writes of one `hostent`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn hostent(
    bump: &mut Bump,
    result: *mut libc::hostent,
    name: &[u8],
    n_aliases: usize,
    aliases: &mut Feed<'_>,
    af: libc::c_int,
    len: usize,
    count: usize,
    addrs: &mut Feed<'_>,
) -> Result<(), Erange> {
    let h_name = bump.str(name)?;
    let alias_arr = bump.ptr_array(n_aliases.checked_add(1).ok_or(Erange)?)?;
    let mut i = 0;
    aliases(&mut |a| {
        if i < n_aliases {
            let p = bump.str(a)?;
            // SAFETY: i < n_aliases, inside the array of n_aliases + 1 pointers.
            unsafe { alias_arr.add(i).write(p) };
            i += 1;
        }
        Ok(())
    })?;
    let addr_arr = bump.ptr_array(count.checked_add(1).ok_or(Erange)?)?;
    let mut j = 0;
    addrs(&mut |a| {
        if j < count && a.len() == len {
            let p = bump.bytes(a, 4)?;
            // SAFETY: j < count, inside the array of count + 1 pointers.
            unsafe { addr_arr.add(j).write(p.cast()) };
            j += 1;
        }
        Ok(())
    })?;
    // SAFETY: the caller guarantees `result` is writable; every pointer stored points into the
    // caller's buffer, and both arrays end in NULL (written by ptr_array).
    unsafe {
        result.write(libc::hostent {
            h_name,
            h_aliases: alias_arr,
            h_addrtype: af,
            h_length: len as libc::c_int,
            h_addr_list: addr_arr,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_from_any_start_and_never_overruns() {
        let mut backing = [0u8; 256];
        for start in 0..9 {
            for len in 0..(256 - start) {
                // SAFETY: the slice [start, start+len) is inside `backing`.
                let mut b = unsafe { Bump::new(backing.as_mut_ptr().add(start).cast(), len) };
                let ok = (|| -> Result<(), Erange> {
                    b.str(b"abc")?;
                    let arr = b.ptr_array(3)?;
                    assert_eq!(arr as usize % 8, 0);
                    let t = b.tuple()?;
                    assert_eq!(t as usize % 8, 0);
                    Ok(())
                })();
                assert!(b.used <= len);
                if len >= 3 + 1 + 7 + 24 + 7 + 40 {
                    assert!(ok.is_ok(), "start {start} len {len}");
                }
            }
        }
    }

    #[test]
    fn tuple_layout_matches_glibc() {
        assert_eq!(size_of::<GaihAddrTuple>(), 40);
        assert_eq!(align_of::<GaihAddrTuple>(), 8);
        assert_eq!(std::mem::offset_of!(GaihAddrTuple, family), 16);
        assert_eq!(std::mem::offset_of!(GaihAddrTuple, addr), 20);
        assert_eq!(std::mem::offset_of!(GaihAddrTuple, scopeid), 36);
    }
}
