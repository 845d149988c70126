import { acceptsSyntax, retrieveAcceptance } from '../../../src/pacs/retrieve-accept.js';

/**
 * WADO-RS Accept negotiation of what RadScribe serves (PS3.18 §8.7.3.5): the stored syntax only,
 * asked for by `transfer-syntax=*`, by its UID, or by leaving the choice to the server.
 */
const ELE = '1.2.840.10008.1.2.1';
const J2K = '1.2.840.10008.1.2.4.90';
const MP = 'multipart/related; type="application/dicom"';

describe('retrieveAcceptance', () => {
  it.each([
    [undefined, [true, true]],
    ['*/*', [true, true]],
    [`${MP}; transfer-syntax=*`, [true, true]],
    ['multipart/related; transfer-syntax=*', [true, true]],
    ['multipart/*; type="application/dicom"; transfer-syntax=*', [true, true]],
    [`${MP}; transfer-syntax=${J2K}`, [false, true]],
    // No transfer-syntax: the PS3.18 default, Explicit VR Little Endian.
    [MP, [true, false]],
    [`${MP}; transfer-syntax=1.2.840.10008.1.2, ${MP}; transfer-syntax=${J2K}`, [false, true]],
    [`application/dicom+json, ${MP}; transfer-syntax="${J2K}"`, [false, true]],
  ] as const)('%s allows [ELE, J2K] = %j', (accept, [ele, j2k]) => {
    const a = retrieveAcceptance(accept);
    expect([acceptsSyntax(a, ELE), acceptsSyntax(a, J2K)]).toEqual([ele, j2k]);
  });

  it.each([
    'application/dicom+json',
    'application/dicom',
    'multipart/related; type="application/octet-stream"',
    `${MP}; transfer-syntax=*; q=0`,
    'not a media type',
  ])('%s is 406 not-acceptable', (accept) => {
    expect(() => retrieveAcceptance(accept)).toThrow(expect.objectContaining({ code: 'not-acceptable' }));
  });
});
