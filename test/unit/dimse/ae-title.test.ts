import { aeTitleField, aeTitleProblem, isValidAeTitle, sameAeTitle } from '../../../src/dimse/ae-title.js';

// PS3.5 Table 6.2-1, VR AE.
describe('AE title (PS3.5 AE VR)', () => {
  it.each(['RADSCRIBE', 'A', 'CT 01', '1234567890123456', ' PADDED ', 'a-b_c.d'])('accepts %j', (t) => {
    expect(aeTitleProblem(t)).toBeUndefined();
    expect(isValidAeTitle(t)).toBe(true);
  });
  it.each([
    ['', /empty/],
    ['12345678901234567', /16/],
    ['A\\B', /backslash/],
    ['A\tB', /control/],
    ['A\nB', /control/],
    ['ÄRZT', /printable ASCII/],
    ['    ', /all spaces/],
  ])('refuses %j', (t, why) => {
    expect(aeTitleProblem(t)).toMatch(why);
    expect(isValidAeTitle(t)).toBe(false);
  });
  it('compares without the non-significant spaces, case-sensitively', () => {
    expect(sameAeTitle('RADSCRIBE       ', ' RADSCRIBE')).toBe(true);
    expect(sameAeTitle('radscribe', 'RADSCRIBE')).toBe(false);
  });
  it('pads the wire field to 16 bytes with spaces', () => {
    expect(aeTitleField('CT01').toString('latin1')).toBe('CT01            ');
  });
});
