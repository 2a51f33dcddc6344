/**
 * A minimal static x86_64 ELF executable that loops on pause(2) forever: the keep-alive
 * entrypoint of the "static" image (no libc, no shell, no compiler needed to build it).
 */

const BASE = 0x400000;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;

// mov eax, 34 (SYS_pause); syscall; jmp back to mov (rel8 -9)
const CODE = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];

/** The bytes of the pause executable. */
export function pauseElf(): Uint8Array {
  const size = EHDR_SIZE + PHDR_SIZE + CODE.length;
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0); // ELF, 64-bit, little-endian, v1, SysV
  v.setUint16(16, 2, true); // e_type: ET_EXEC
  v.setUint16(18, 0x3e, true); // e_machine: x86_64
  v.setUint32(20, 1, true); // e_version
  v.setBigUint64(24, BigInt(BASE + EHDR_SIZE + PHDR_SIZE), true); // e_entry
  v.setBigUint64(32, BigInt(EHDR_SIZE), true); // e_phoff
  v.setBigUint64(40, 0n, true); // e_shoff
  v.setUint32(48, 0, true); // e_flags
  v.setUint16(52, EHDR_SIZE, true); // e_ehsize
  v.setUint16(54, PHDR_SIZE, true); // e_phentsize
  v.setUint16(56, 1, true); // e_phnum
  v.setUint16(58, 0, true); // e_shentsize
  v.setUint16(60, 0, true); // e_shnum
  v.setUint16(62, 0, true); // e_shstrndx
  const ph = EHDR_SIZE;
  v.setUint32(ph, 1, true); // p_type: PT_LOAD
  v.setUint32(ph + 4, 5, true); // p_flags: R+X
  v.setBigUint64(ph + 8, 0n, true); // p_offset: map the whole file
  v.setBigUint64(ph + 16, BigInt(BASE), true); // p_vaddr
  v.setBigUint64(ph + 24, BigInt(BASE), true); // p_paddr
  v.setBigUint64(ph + 32, BigInt(size), true); // p_filesz
  v.setBigUint64(ph + 40, BigInt(size), true); // p_memsz
  v.setBigUint64(ph + 48, 0x1000n, true); // p_align
  buf.set(CODE, EHDR_SIZE + PHDR_SIZE);
  return buf;
}
